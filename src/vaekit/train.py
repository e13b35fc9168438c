"""A model-agnostic training loop that can stop at any step and continue exactly.

The trainer only needs `model.elbo(x, beta, free_bits, generator) -> ElboTerms` (and
`model.iwae(x, k, generator)` for the importance-weighted objective); everything a
run writes to disk (metrics, checkpoints, pictures) happens in callbacks. Data stays in memory as
uint8 (on the training device) and each batch is gathered with one indexing op from a seeded
permutation: no per-item Python, no DataLoader workers.

Everything the loop depends on lives in `TrainerState` (weights aside): the optimiser, both
random streams, this epoch's permutation, the position in it and the running sums. A snapshot of
it taken between two steps, restored later, continues the run bit for bit on CPU.
"""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vaekit.config import RunConfig, TrainConfig
from vaekit.data import DatasetSplits
from vaekit.data.disk import DiskImages
from vaekit.data.transforms import to_model_input
from vaekit.distributed import SINGLE, Cluster, all_max, all_sum, shard, shard_rows
from vaekit.errors import VaekitError
from vaekit.models import VAE
from vaekit.objectives import beta_at, lr_factor
from vaekit.scoring import ElboSummary, elbo_over, summarise

# Seeds derived from the run seed, kept apart so that changing how many numbers one stream
# draws never shifts another stream.
EVAL_SEED_OFFSET = 1_000_003
NOISE_SEED_OFFSET = 7919
RANK_SEED_STRIDE = 104_729  # validation: each rank scores its own share with its own noise


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
    skipped_steps: int  # steps skipped this epoch because the loss or a gradient was not finite


class Callback(Protocol):
    def on_epoch_end(self, model: VAE, report: EpochReport) -> None: ...


# A function that persists a snapshot: (tensors, json-able info) -> None.
Checkpointer = Callable[[dict[str, torch.Tensor], dict[str, Any]], None]


class TrainingInterrupted(VaekitError):
    """Ctrl-C: a resumable snapshot was saved (when a checkpointer was given)."""


class TrainingDiverged(VaekitError):
    """Too many non-finite steps in a row."""


class TrainerState:
    """Everything the loop carries between steps, plus (de)serialisation as flat tensors."""

    def __init__(self, model: VAE, config: RunConfig, n_images: int, cluster: Cluster = SINGLE) -> None:
        train = config.train
        device = model.device
        self.cluster = cluster
        self.n_images = n_images
        self.batch_size = train.batch_size
        self.steps_per_epoch = -(-n_images // train.batch_size)
        self.total_steps = self.steps_per_epoch * train.epochs
        self.order_generator = torch.Generator().manual_seed(train.seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(train.seed + NOISE_SEED_OFFSET)
        # fused: one kernel for the whole update instead of a loop over parameters (a fifth of
        # an MLP step on CPU otherwise); same arithmetic, deterministic.
        self.optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, train.lr_schedule)
        )
        self.epoch = 1  # the epoch in progress (1-based)
        self.batch_index = 0  # the next batch of this epoch
        self.step = 0  # optimiser steps taken
        self.order: torch.Tensor | None = None  # this epoch's permutation, drawn when it starts
        self.totals = torch.zeros(3, dtype=torch.float64)  # loss, recon, kl summed over this rank's images
        self.counted = 0  # images in those sums (skipped steps add none)
        self.epoch_seconds = 0.0  # time spent in this epoch before a resume
        self.skipped_in_row = 0
        self.skipped_this_epoch = 0
        self.best_val = math.inf  # for early stopping
        self.epochs_since_best = 0
        self.stopped = False  # early stopping ended the run

    def start_epoch(self) -> torch.Tensor:
        if self.order is None:
            self.order = torch.randperm(self.n_images, generator=self.order_generator)
        return self.order

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch_index = 0
        self.order = None
        self.totals = torch.zeros(3, dtype=torch.float64)
        self.counted = 0
        self.epoch_seconds = 0.0
        self.skipped_this_epoch = 0

    def snapshot(self, model: VAE) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Flat tensors (safetensors-ready) and JSON-able info; no pickle anywhere.

        In a distributed run every rank must call it at the same step (it sums the ranks' running
        totals); the result describes the whole run.
        """
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        optim = self.optimizer.state_dict()
        for index, per_param in optim["state"].items():
            for key, value in per_param.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
        tensors["rng.order"] = self.order_generator.get_state()
        tensors["rng.noise"] = self.noise_generator.get_state()  # the same on every rank
        totals = all_sum(torch.cat([self.totals.cpu(), torch.tensor([self.counted], dtype=torch.float64)]))
        tensors["loop.totals"] = totals[:3].clone()
        if self.order is not None:
            tensors["loop.order"] = self.order
        info = {
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "step": self.step,
            "counted": int(totals[3]),
            "epoch_seconds": self.epoch_seconds,
            "skipped_in_row": self.skipped_in_row,
            "skipped_this_epoch": self.skipped_this_epoch,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "epochs_since_best": self.epochs_since_best,
            "stopped": self.stopped,
            "param_groups": optim["param_groups"],
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
        }
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, info

    def restore(self, model: VAE, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                per_param.setdefault(int(index), {})[key] = value
        self.optimizer.load_state_dict({"state": per_param, "param_groups": info["param_groups"]})
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **info["scheduler"]})
        self.order_generator.set_state(tensors["rng.order"])
        self.noise_generator.set_state(tensors["rng.noise"])
        # The snapshot holds the run's sums: rank 0 carries them on, the others start from zero.
        self.totals = tensors["loop.totals"].clone() if self.cluster.is_main else torch.zeros(3, dtype=torch.float64)
        self.counted = info["counted"] if self.cluster.is_main else 0
        self.order = tensors.get("loop.order")
        self.epoch, self.batch_index, self.step = info["epoch"], info["batch_index"], info["step"]
        self.epoch_seconds = info["epoch_seconds"]
        self.skipped_in_row, self.skipped_this_epoch = info["skipped_in_row"], info["skipped_this_epoch"]
        self.best_val = math.inf if info["best_val"] is None else info["best_val"]
        self.epochs_since_best, self.stopped = info["epochs_since_best"], info["stopped"]


class TrainingObjective(torch.nn.Module):
    """The per-image training loss as a module's forward pass: DistributedDataParallel can only
    synchronise gradients of work that goes through the forward of the module it wraps."""

    def __init__(self, model: VAE, train: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.train_cfg = train

    def forward(
        self, x: torch.Tensor, beta: float, generator: torch.Generator, rows: slice, global_count: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (b, C, H, W), this rank's `rows` of a global batch of `global_count` images -> loss,
        recon_nats, kl_nats, each (b,).

        Every rank draws the noise of the whole global batch from the same stream and keeps its
        rows, so N ranks compute what one process would, and the stream stays in step everywhere.
        """
        z_dim = self.model.noise_dim
        if self.train_cfg.objective == "iwae":
            k = self.train_cfg.iwae_samples
            eps = torch.randn((k, global_count, z_dim), generator=generator, device=x.device)[:, rows]  # (K, b, Z)
            terms = self.model.iwae(x, k, eps=eps)
        else:
            eps = torch.randn((global_count, z_dim), generator=generator, device=x.device)[rows]  # (b, Z)
            terms = self.model.elbo(x, beta=beta, free_bits=self.train_cfg.free_bits, eps=eps)
        return terms.loss, terms.recon_nats, terms.kl_nats


def _across_ranks(local: ElboSummary, model: VAE, config: RunConfig) -> ElboSummary:
    """Combine the ranks' summaries over their shards into the summary of the whole set."""
    weight = float(local.images)  # an empty share has means 0.0 (elbo_over), so it adds nothing
    sums = torch.tensor(
        [local.recon_nats * weight, local.kl_nats * weight, weight], dtype=torch.float64, device=model.device
    )
    recon, kl, n = all_sum(sums).tolist()
    return summarise(model, config.data, recon / n, kl / n, int(n))


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C (SIGINT) and SIGTERM into a flag the loop checks between steps, so a snapshot is
    never taken in the middle of an optimiser update. SIGTERM is how torchrun, SLURM (scancel,
    preemption) and container runtimes ask a job to stop. Yields a function telling whether
    either arrived."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed.is_set
        return
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda signum, frame: pressed.set()) for number in stop_signals}
    try:
        yield pressed.is_set
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def batch_reader(images: np.ndarray | DiskImages, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """index (B,) -> uint8 images (B, C, H, W) on `device`. In-memory sets are moved to the device
    once and gathered with one indexing op; sets on disk are read batch by batch."""
    if isinstance(images, DiskImages):
        return lambda index: torch.from_numpy(images.read(index.cpu().numpy())).to(device, non_blocking=True)
    resident = torch.from_numpy(images).to(device)  # uint8 (N, C, H, W)
    return lambda index: resident[index]


def _gradient_norm(parameters: list[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(parameters, clip)
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)


def fit(
    model: VAE,
    splits: DatasetSplits,
    config: RunConfig,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    checkpointer: Checkpointer | None = None,
    resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
    cluster: Cluster = SINGLE,
) -> list[EpochReport]:
    """Train `model` (already on its device) until `config.train.epochs` epochs are done.

    `checkpointer` receives a resumable snapshot every `checkpoint_every` steps, at the end of
    every epoch and on Ctrl-C; `resume` is such a snapshot to continue from.

    With several ranks (`cluster`, process group started), every rank calls fit with the same
    config: each global batch of `batch_size` images is split between the ranks, gradients are
    averaged by DistributedDataParallel, metrics are summed over ranks, and only rank 0 calls the
    checkpointer (pass callbacks on rank 0 only).
    """
    train_cfg, data_cfg = config.train, config.data
    device = model.device
    gather = batch_reader(splits.train.images, device)
    val_images = torch.from_numpy(shard(splits.val.array, cluster)).to(device)  # this rank's share
    n = len(splits.train)
    state = TrainerState(model, config, n, cluster)
    if resume is not None:
        state.restore(model, *resume)
    parameters = [p for p in model.parameters() if p.requires_grad]
    objective: torch.nn.Module = TrainingObjective(model, train_cfg)
    if cluster.active:
        # After restore: DDP starts by broadcasting rank 0's weights to every rank.
        objective = DistributedDataParallel(objective, device_ids=[device] if device.type == "cuda" else None)
    say = tqdm.write if cluster.is_main else lambda message: None
    reports = []

    def save() -> None:
        if checkpointer is not None:
            tensors, info = state.snapshot(model)  # on every rank: it sums over all of them
            if cluster.is_main:
                checkpointer(tensors, info)

    with deferred_interrupt() as interrupted:
        while state.epoch <= train_cfg.epochs and not state.stopped:
            model.train()
            started = time.perf_counter() - state.epoch_seconds
            order = state.start_epoch().to(device)
            totals = state.totals.to(device)
            bar = tqdm(
                total=state.steps_per_epoch,
                initial=state.batch_index,
                desc=f"epoch {state.epoch}/{train_cfg.epochs}",
                disable=None if progress and cluster.is_main else True,
                leave=False,
            )
            while state.batch_index < state.steps_per_epoch:
                start = state.batch_index * train_cfg.batch_size
                global_batch = order[start : start + train_cfg.batch_size]
                rows = shard_rows(len(global_batch), cluster)
                # Converted whole (binarisation draws noise per pixel), then this rank's rows: a view.
                x = to_model_input(gather(global_batch), data_cfg, state.noise_generator)[rows]
                beta = beta_at(state.step, train_cfg.beta, train_cfg.warmup_steps)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=train_cfg.precision == "bf16"):
                    per_image, recon, kl = objective(x, beta, state.noise_generator, rows, len(global_batch))
                # The mean over the global batch: DDP averages the ranks' gradients, hence the
                # factor world_size (exact even when the last batch does not split evenly).
                loss = per_image.sum() * (cluster.world_size / len(global_batch))
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = _gradient_norm(parameters, train_cfg.clip_grad_norm)
                finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
                pressed = interrupted()
                if cluster.active:  # every rank must take the same branch, or the next collective hangs
                    flags = all_max(torch.tensor([not finite, pressed], dtype=torch.int32)).tolist()
                    finite, pressed = not flags[0], bool(flags[1])
                if finite:
                    state.optimizer.step()
                    state.scheduler.step()
                    state.step += 1
                    state.skipped_in_row = 0
                    with torch.no_grad():
                        sums = torch.stack([per_image.sum(), recon.sum(), kl.sum()])
                        totals += sums.double()
                    state.counted += len(x)
                else:
                    # A non-finite loss or gradient never reaches the weights: skip the step.
                    state.skipped_in_row += 1
                    state.skipped_this_epoch += 1
                    say(
                        f"skipped step {state.step + 1} (epoch {state.epoch}, batch {state.batch_index + 1}): "
                        f"loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}"
                    )
                    if state.skipped_in_row >= train_cfg.max_bad_steps:
                        raise TrainingDiverged(
                            f"training diverged: {state.skipped_in_row} steps in a row had a non-finite loss or "
                            f"gradient (epoch {state.epoch}, step {state.step}); the newest checkpoint is the last "
                            "good one. Lower --lr or set --clip-grad-norm, then train again"
                        )
                state.batch_index += 1
                bar.update(1)
                if progress and (state.batch_index % 50 == 0 or state.batch_index == state.steps_per_epoch):
                    loss_mean, recon_mean, kl_mean = (totals / max(1, state.counted)).tolist()  # syncs: rarely
                    bar.set_postfix(loss=f"{loss_mean:.2f}", recon=f"{recon_mean:.2f}", kl=f"{kl_mean:.2f}")
                state.totals = totals  # (device tensor; the snapshot copies it to the CPU)
                state.epoch_seconds = time.perf_counter() - started
                at_checkpoint = train_cfg.checkpoint_every and state.step % train_cfg.checkpoint_every == 0
                if pressed or (at_checkpoint and state.batch_index < state.steps_per_epoch):
                    save()
                if pressed:
                    bar.close()
                    raise TrainingInterrupted(
                        f"interrupted at epoch {state.epoch}, step {state.step}"
                        + ("; progress saved" if checkpointer is not None else "")
                    )
            bar.close()
            train_seconds = time.perf_counter() - started
            epoch_sums = all_sum(torch.cat([totals, totals.new_tensor([state.counted])]))
            loss_mean, recon_mean, kl_mean = (epoch_sums[:3] / max(1.0, float(epoch_sums[3]))).tolist()
            eval_seed = train_cfg.seed + EVAL_SEED_OFFSET + RANK_SEED_STRIDE * cluster.rank
            val = elbo_over(model, val_images, data_cfg, train_cfg.eval_batch_size, seed=eval_seed)
            if cluster.active:
                val = _across_ranks(val, model, config)
            report = EpochReport(
                epoch=state.epoch,
                step=state.step,
                beta=beta_at(state.step, train_cfg.beta, train_cfg.warmup_steps),
                train_loss=loss_mean,
                train_recon_nats=recon_mean,
                train_kl_nats=kl_mean,
                val=val,
                epoch_seconds=time.perf_counter() - started,
                images_per_second=n / train_seconds if math.isfinite(train_seconds) and train_seconds > 0 else 0.0,
                skipped_steps=state.skipped_this_epoch,
            )
            reports.append(report)
            for callback in callbacks:
                callback.on_epoch_end(model, report)
            if val.nelbo_nats < state.best_val:
                state.best_val, state.epochs_since_best = val.nelbo_nats, 0
            else:
                state.epochs_since_best += 1
            patience = train_cfg.early_stopping
            if patience and state.epochs_since_best >= patience and state.epoch < train_cfg.epochs:
                state.stopped = True
                say(
                    f"early stopping after epoch {state.epoch}: validation -ELBO has not improved for {patience} "
                    f"epoch(s) (best {state.best_val:.2f} nats/image)"
                )
            state.end_epoch()
            save()
    if cluster.active:
        # DistributedDataParallel sits in reference cycles: collect it now, while the process
        # group lives. Left to a later collection, or to interpreter exit after the group is
        # destroyed, its gloo work objects can abort the process (std::terminate).
        del objective
        gc.collect()
    return reports
