"""Training a VQ-VAE's prior over its codes, after the autoencoder (`vaekit train-prior`, or
`vaekit train --prior-epochs N`): the training split encoded once to code maps, then the
PixelCNN over codes (models/code_prior.py) fitted by maximum likelihood.

The prior lives beside the weights whose codes it models, in RUN/checkpoints/code_prior.safetensors,
written atomically after every epoch with the checkpoint's step (a prior is attached only to the
checkpoint it was trained for) and the held-out code length in nats. Each epoch also appends a
line to RUN/prior_metrics.jsonl. Shapes: N items, M codes per item.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from vaekit.atomic import append_line, write_bytes
from vaekit.codes import encode_items
from vaekit.errors import VaekitError
from vaekit.loading import TrainedRun
from vaekit.models.vq import CODE_PRIOR_FILE, CODE_PRIOR_FORMAT, VQVAE

PRIOR_METRICS = "prior_metrics.jsonl"
EVAL_BATCH = 1000


def prior_path(run: TrainedRun) -> Path:
    """Where the prior of `run`'s checkpoint is kept (beside that checkpoint)."""
    return run.path / "checkpoints" / CODE_PRIOR_FILE if run.path.is_dir() else run.path.parent / CODE_PRIOR_FILE


def check_trainable(run: TrainedRun, force: bool) -> VQVAE:
    """The run's VQ-VAE, refusing one whose prior exists (without --force)."""
    model = run.model
    assert isinstance(model, VQVAE)  # this phase is the VQ family's own (its spec's "prior_phase")
    path = prior_path(run)
    if path.exists() and not force:
        raise VaekitError(f"{path} already holds a trained prior: pass --force to train a new one in its place")
    return model


def prior_phase(
    run: TrainedRun,
    epochs: int,
    *,
    force: bool = False,
    lr: float = 1e-3,
    batch_size: int | None = None,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> str:
    """The VQ family's prior phase, as `vaekit train-prior` and `--prior-epochs` run it through
    its spec: checked, trained, and summed up in one line."""
    check_trainable(run, force)
    summary = train_code_prior(run, epochs, lr, batch_size, seed, say)
    held = "validation_nats" if "validation_nats" in summary else "test_nats"
    return (
        f"prior over codes: {summary[held]:.2f} nats per item on the {held.split('_')[0]} split (uniform "
        f"{summary['uniform_nats']:.2f}), {summary['seconds']:.1f} s; saved to {prior_path(run)}"
    )


def codes_of_split(run: TrainedRun, images: np.ndarray, seed: int) -> torch.Tensor:
    """Every item's codes, (N, M) int64 on the model's device."""
    codes = encode_items(run.model, images, run.config.data, seed=seed).named["z_codes"]
    return torch.from_numpy(codes).to(run.model.device)


@torch.no_grad()
def code_length_nats(model: VQVAE, codes: torch.Tensor) -> float:
    """-log p(c) averaged over items, in nats per item (the rate of the VQ-VAE's bound)."""
    model.code_prior.eval()
    total = sum(
        float(-model.code_prior.log_prob(codes[i : i + EVAL_BATCH]).sum()) for i in range(0, len(codes), EVAL_BATCH)
    )
    return total / max(1, len(codes))


def train_code_prior(
    run: TrainedRun,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int | None = None,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit the run's prior over codes for `epochs` epochs, saving it after each; returns the summary."""
    model = run.model
    assert isinstance(model, VQVAE)
    splits = run.load_data()
    held_out = splits.val if len(splits.val) else splits.test
    which = "validation" if len(splits.val) else "test"
    started = time.perf_counter()
    train_codes, held_codes = codes_of_split(run, splits.train.array, seed), codes_of_split(run, held_out.array, seed)
    uniform = model.layout.count * math.log(model.codebook.size)
    say(
        f"training the prior over codes of {run.path}: {len(train_codes)} code maps of {model.layout.map_shape} "
        f"from {model.codebook.size} codes (uniform: {uniform:.2f} nats per item), {epochs} epochs"
    )
    prior = model.code_prior.train().requires_grad_(True)
    optimizer = torch.optim.Adam(prior.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    size = batch_size or run.config.train.batch_size
    summary: dict[str, Any] = {}
    for epoch in range(1, epochs + 1):
        prior.train()
        order = torch.randperm(len(train_codes), generator=generator).to(train_codes.device)
        total = 0.0
        for start in range(0, len(order), size):
            batch = train_codes[order[start : start + size]]
            loss = -prior.log_prob(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            prior.trained_steps += 1
            total += loss.item() * len(batch)
        held_nats = code_length_nats(model, held_codes)
        summary = {
            "epoch": epoch,
            "steps": int(prior.trained_steps),
            "train_nats": total / len(train_codes),
            f"{which}_nats": held_nats,
            "uniform_nats": uniform,
            "seconds": time.perf_counter() - started,
            "checkpoint_step": run.info.get("step"),
        }
        save_code_prior(prior_path(run), model, summary)
        append_line(run.run_dir / PRIOR_METRICS, json.dumps(summary))
        say(f"prior epoch {epoch}/{epochs}: train {summary['train_nats']:.2f}, {which} {held_nats:.2f} nats per item")
    prior.requires_grad_(False).eval()
    return summary


def save_code_prior(path: Path, model: VQVAE, info: dict[str, Any]) -> None:
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.code_prior.state_dict().items()}
    write_bytes(path, save(tensors, metadata={"format": CODE_PRIOR_FORMAT, "info": json.dumps(info)}))
