"""A model-agnostic training loop.

The trainer only needs `model.elbo(x, beta, free_bits, generator) -> ElboTerms`; everything a
run writes to disk (metrics, checkpoints, pictures) happens in callbacks. Data stays in memory as
uint8 (on the training device) and each batch is gathered with one indexing op from a seeded
permutation: no per-item Python, no DataLoader workers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm import tqdm

from vaekit.config import RunConfig
from vaekit.data import DatasetSplits
from vaekit.data.transforms import to_model_input
from vaekit.models import VAE
from vaekit.objectives import beta_at, lr_factor
from vaekit.scoring import ElboSummary, elbo_over

# Seeds derived from the run seed, kept apart so that changing how many batches one stream
# draws never shifts another stream.
EVAL_SEED_OFFSET = 1_000_003
NOISE_SEED_OFFSET = 7919


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    step: int  # optimiser steps so far
    beta: float  # KL weight at the end of the epoch
    train_loss: float  # mean objective per image (nats when beta = 1)
    train_recon_nats: float
    train_kl_nats: float
    val: ElboSummary
    epoch_seconds: float
    images_per_second: float


class Callback(Protocol):
    def on_epoch_end(self, model: VAE, report: EpochReport) -> None: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from vaekit.errors import VaekitError

        raise VaekitError(f"--device {name} asked for CUDA but none is available here: use --device cpu or auto")
    return device


def fit(
    model: VAE,
    splits: DatasetSplits,
    config: RunConfig,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> list[EpochReport]:
    """Train `model` (already on its device) for `config.train.epochs` epochs."""
    train_cfg, data_cfg = config.train, config.data
    device = model.device
    images = torch.from_numpy(splits.train.images).to(device)  # uint8 (N, C, H, W), kept resident
    val_images = torch.from_numpy(splits.val.images).to(device)
    n = len(images)
    order_generator = torch.Generator().manual_seed(train_cfg.seed)
    noise_generator = torch.Generator(device=device).manual_seed(train_cfg.seed + NOISE_SEED_OFFSET)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    steps_per_epoch = -(-n // train_cfg.batch_size)
    total_steps = steps_per_epoch * train_cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, train_cfg.lr_schedule))
    step = 0
    reports = []
    for epoch in range(1, train_cfg.epochs + 1):
        model.train()
        started = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, recon, kl summed over images
        order = torch.randperm(n, generator=order_generator).to(device)
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch}/{train_cfg.epochs}",
            disable=None if progress else True,
            leave=False,
        )
        for batch_index in bar:
            index = order[batch_index * train_cfg.batch_size : (batch_index + 1) * train_cfg.batch_size]
            x = to_model_input(images[index], data_cfg, noise_generator)
            beta = beta_at(step, train_cfg.beta, train_cfg.warmup_steps)
            terms = model.elbo(x, beta=beta, free_bits=train_cfg.free_bits, generator=noise_generator)
            loss = terms.loss.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            with torch.no_grad():
                totals += torch.stack([terms.loss.sum(), terms.recon_nats.sum(), terms.kl_nats.sum()]).double()
            # Reading a value back forces a device sync; do it rarely.
            if progress and (batch_index % 50 == 0 or batch_index == steps_per_epoch - 1):
                seen = min((batch_index + 1) * train_cfg.batch_size, n)
                loss_mean, recon_mean, kl_mean = (totals / seen).tolist()
                bar.set_postfix(loss=f"{loss_mean:.2f}", recon=f"{recon_mean:.2f}", kl=f"{kl_mean:.2f}")
        bar.close()
        train_seconds = time.perf_counter() - started
        loss_mean, recon_mean, kl_mean = (totals / n).tolist()
        val = elbo_over(model, val_images, data_cfg, train_cfg.eval_batch_size, seed=train_cfg.seed + EVAL_SEED_OFFSET)
        report = EpochReport(
            epoch=epoch,
            step=step,
            beta=beta_at(step, train_cfg.beta, train_cfg.warmup_steps),
            train_loss=loss_mean,
            train_recon_nats=recon_mean,
            train_kl_nats=kl_mean,
            val=val,
            epoch_seconds=time.perf_counter() - started,
            images_per_second=n / train_seconds,
        )
        reports.append(report)
        for callback in callbacks:
            callback.on_epoch_end(model, report)
    return reports
