"""A model-agnostic training loop that can stop at any step and continue exactly.

The trainer only needs `model.elbo(x, beta, free_bits, eps=...) -> ElboTerms` (and
`model.iwae(x, k, eps=...)` for the importance-weighted objective); everything a run writes to
disk (metrics, checkpoints, pictures) happens in callbacks. Data stays in memory as uint8 (on the
training device) and each batch is gathered with one indexing op from a seeded permutation: no
per-item Python, no DataLoader workers. The loop's whole state is a `TrainerState` (state.py).

Shapes: B global batch, b this rank's rows of it, Z noise per image, K importance samples.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from vaekit.config import RunConfig
from vaekit.data import DatasetSplits
from vaekit.data.disk import DiskImages
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.metrics.elbo import ElboSummary, set_figure, summarise
from vaekit.models import VAE
from vaekit.objectives import beta_at
from vaekit.objectives.base import Objective, StepBatch, own_parts
from vaekit.objectives.registry import build_objective
from vaekit.progress import write
from vaekit.training.callbacks import Callback, EarlyStopping, EpochProgress, EpochReport, StepReport
from vaekit.training.distributed import SINGLE, Cluster, all_max, all_sum, gather_rows, shard, shard_rows
from vaekit.training.state import EVAL_SEED_OFFSET, RANK_SEED_STRIDE, Checkpointer, Snapshot, TrainerState

# Fewer validation images cannot tell one epoch's -ELBO from the next (the standard error of a
# mean over n images is tens of nats / sqrt(n), late epochs differ by tenths): keep the last.
MIN_SELECTION_IMAGES = 1000


def kept_weights(val_images: int, item: str = "image") -> str | None:
    """Why the last epoch's weights are kept rather than the best on validation, or None when
    validation chooses. `item` names what the set holds (image, or a table's item)."""
    if val_images == 0:
        return "no validation set (--val-size 0): the last epoch's weights are kept"
    if val_images < MIN_SELECTION_IMAGES:
        return (
            f"the validation set has {val_images} {item}s, too few to tell epochs apart: the last epoch's weights "
            f"are kept (validate on at least {MIN_SELECTION_IMAGES} to choose the best epoch)"
        )
    return None


class TrainingInterrupted(VaekitError):
    """Ctrl-C or SIGTERM: a resumable snapshot was saved (when a checkpointer was given)."""


class TrainingDiverged(VaekitError):
    """Too many non-finite steps in a row."""


class TrainingObjective(torch.nn.Module):
    """The per-image training loss as a module's forward pass: DistributedDataParallel can only
    synchronise gradients of work that goes through the forward of the module it wraps. Which
    loss is `objective`'s business (vaekit/objectives/); this only hands it the step's batch."""

    def __init__(self, model: VAE, objective: Objective, cluster: Cluster = SINGLE) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.cluster = cluster
        own = own_parts(objective)
        # A submodule, so that DistributedDataParallel synchronises its gradients too.
        self.own = own[0] if own is not None else None
        # The last forward pass's state update that is not a gradient (ObjectiveTerms.after_step),
        # for the trainer to run once the step is taken.
        self.pending: Callable[[], object] | None = None

    def forward(
        self,
        x: torch.Tensor,
        beta: float,
        generator: torch.Generator,
        rows: slice,
        global_count: int,
        step: int,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (b, C, H, W), this rank's `rows` of a global batch of `global_count` images (and their
        labels y (b,) for a conditional model) -> loss, recon_nats, kl_nats, each (b,), the
        objective's own terms (b, T) in the order of `objective.terms`, and the loss of its own
        parameters (b,) (zeros for an objective without any)."""
        cluster = self.cluster
        batch = StepBatch(
            x,
            y,
            step,
            beta,
            rows,
            global_count,
            generator,
            gather=lambda local: gather_rows(local, global_count, cluster),
            distributed=cluster.active,
            total=all_sum,
        )
        terms = self.objective(self.model, batch)
        self.pending = terms.after_step
        extras = [terms.extras[name] for name in self.objective.terms]
        stacked = torch.stack(extras, -1) if extras else terms.loss.new_zeros((len(x), 0))
        auxiliary = terms.auxiliary if terms.auxiliary is not None else torch.zeros_like(terms.loss)
        return terms.loss, terms.recon_nats, terms.kl_nats, stacked, auxiliary


def across_ranks(local: ElboSummary, model: VAE, config: RunConfig) -> ElboSummary:
    """Combine the ranks' summaries over their shards into the summary of the whole set."""
    weight = float(local.images)  # an empty share has means 0.0 (elbo_over), so it adds nothing
    sums = torch.tensor(
        [local.recon_nats * weight, local.kl_nats * weight, weight], dtype=torch.float64, device=model.device
    )
    recon, kl, n = all_sum(sums).tolist()
    combined = summarise(model, config.data, recon / n, kl / n, int(n))
    if local.figure == "reconstruction":  # a deterministic encoder's figure stays what it is
        return dataclasses.replace(combined, figure=local.figure, bits_per_dim=None)
    return combined


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


class Trainer:
    """The moving parts of one training run on this rank, and the named pieces of an epoch:
    `step` (one optimiser update, or a skipped one), `train_epoch` (the steps, checkpoints and
    interrupts), `report_epoch` (validation and the epoch's figures), `save`."""

    def __init__(
        self,
        model: VAE,
        splits: DatasetSplits,
        config: RunConfig,
        cluster: Cluster = SINGLE,
        checkpointer: Checkpointer | None = None,
        progress: bool = True,
        resume: Snapshot | None = None,
        step_listeners: Sequence[Callable[[StepReport], None]] = (),
    ) -> None:
        self.model, self.config, self.cluster, self.checkpointer = model, config, cluster, checkpointer
        self.step_listeners = list(step_listeners)
        device = model.device
        self.gather = batch_reader(splits.train.images, device)
        train_labels = model.conditioning(splits.train.labels, "the training set")
        # int64 (N,) on the device, gathered with the images' index; None for an unconditional model
        self.train_labels = None if train_labels is None else torch.from_numpy(train_labels).to(device)
        self.val_images = torch.from_numpy(shard(splits.val.array, cluster)).to(device)  # this rank's share
        val_labels = model.conditioning(splits.val.labels, "the validation set")
        self.val_labels = None if val_labels is None else shard(val_labels, cluster)
        self.val_count = len(splits.val)  # on every rank, whatever its share
        self.keeps_last_epoch = kept_weights(self.val_count) is not None  # else validation picks the epoch
        objective = build_objective(config, dataset_size=len(splits.train))
        self.term_names = objective.terms
        self.own = own_parts(objective)  # the objective's own module and optimiser, if it has any
        if self.own is not None:
            self.own[0].to(device)  # in place: its optimiser keeps the same parameters
        self.state = TrainerState(model, config, len(splits.train), cluster, terms=len(objective.terms), own=self.own)
        if resume is not None:
            self.state.restore(model, *resume)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.objective: torch.nn.Module | None = TrainingObjective(model, objective, cluster)
        if cluster.active:
            # After restore: DDP starts by broadcasting rank 0's weights to every rank.
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[device] if device.type == "cuda" else None
            )
        self.progress = EpochProgress(progress and cluster.is_main, config.train.epochs)
        self.say: Callable[[str], None] = write if cluster.is_main else lambda message: None

    def save(self) -> None:
        """Hand a resumable snapshot to the checkpointer. Every rank must call it at the same step
        (the snapshot sums over all of them); rank 0 alone writes."""
        if self.checkpointer is not None:
            tensors, info = self.state.snapshot(self.model)
            if self.cluster.is_main:
                self.checkpointer(tensors, info)

    def step(self, global_batch: torch.Tensor, interrupted: Callable[[], bool]) -> bool:
        """One optimiser step on this rank's rows of `global_batch` (B,) image indices, skipped when
        the loss or a gradient is not finite on any rank. Returns whether a stop was asked for."""
        train, state, cluster = self.config.train, self.state, self.cluster
        assert self.objective is not None
        rows = shard_rows(len(global_batch), cluster)
        # Converted whole (binarisation draws noise per pixel), then this rank's rows: a view.
        x = to_model_input(self.gather(global_batch), self.config.data, state.noise_generator)[rows]  # (b, C, H, W)
        y = None if self.train_labels is None else self.train_labels[global_batch][rows]  # (b,)
        beta = beta_at(state.step, train.beta, train.warmup_steps)
        with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=train.precision == "bf16"):
            per_image, recon, kl, extras, auxiliary = self.objective(
                x, beta, state.noise_generator, rows, len(global_batch), state.step, y
            )  # (b,) x 3, (b, T), (b,)
        # The mean over the global batch: DDP averages the ranks' gradients, hence the factor
        # world_size (exact even when the last batch does not split evenly). The objective's own
        # parameters take their loss in the same backward pass; it moves nothing else.
        loss = (per_image + auxiliary).sum() * (cluster.world_size / len(global_batch))
        state.optimizer.zero_grad(set_to_none=True)
        if self.own is not None:
            self.own[1].zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _gradient_norm(self.parameters, train.clip_grad_norm)
        finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))
        pressed = interrupted()
        if cluster.active:  # every rank must take the same branch, or the next collective hangs
            flags = all_max(torch.tensor([not finite, pressed], dtype=torch.int32)).tolist()
            finite, pressed = not flags[0], bool(flags[1])
        if finite:
            lr = float(state.optimizer.param_groups[0]["lr"])  # this step's, before the schedule moves it
            state.optimizer.step()
            if self.own is not None:
                self.own[1].step()
            self._after_step()
            state.scheduler.step()
            state.step += 1
            state.skipped_in_row = 0
            with torch.no_grad():
                sums = torch.cat([torch.stack([per_image.sum(), recon.sum(), kl.sum()]), extras.sum(0)])
                state.totals += sums.double()
            state.counted += len(x)
            if self.step_listeners:  # a device sync per step, paid only when someone listens
                means = (sums.detach() / max(1, len(x))).tolist()
                loss_mean, recon_mean, kl_mean = means[:3]
                terms = dict(zip(self.term_names, means[3:], strict=True))
                report = StepReport(state.step, loss_mean, recon_mean, kl_mean, beta, lr, terms)
                for listener in self.step_listeners:
                    listener(report)
        else:
            self._skip(loss, grad_norm)
            self._drop_pending()
        return pressed

    def _drop_pending(self) -> Callable[[], object] | None:
        """The state update the step's objective handed over (a codebook's moving averages), taken
        from it: run once the step is taken, dropped with a skipped one."""
        objective = self.objective.module if isinstance(self.objective, DistributedDataParallel) else self.objective
        assert isinstance(objective, TrainingObjective)
        pending, objective.pending = objective.pending, None
        return pending

    def _after_step(self) -> None:
        pending = self._drop_pending()
        if pending is not None:
            pending()

    def _skip(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """A non-finite loss or gradient never reaches the weights; too many in a row end the run."""
        state = self.state
        state.skipped_in_row += 1
        state.skipped_this_epoch += 1
        self.say(
            f"skipped step {state.step + 1} (epoch {state.epoch}, batch {state.batch_index + 1}): "
            f"loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}"
        )
        if state.skipped_in_row >= self.config.train.max_bad_steps:
            raise TrainingDiverged(
                f"training diverged: {state.skipped_in_row} steps in a row had a non-finite loss or "
                f"gradient (epoch {state.epoch}, step {state.step}); the newest checkpoint is the last "
                "good one. Lower --lr or set --clip-grad-norm, then train again"
            )

    def train_epoch(self, interrupted: Callable[[], bool]) -> float:
        """The remaining steps of the epoch in progress; returns its start on the perf_counter clock
        (earlier than now by the time it ran before a resume)."""
        train, state = self.config.train, self.state
        started = time.perf_counter() - state.epoch_seconds
        order = state.start_epoch().to(self.model.device)
        state.totals = state.totals.to(self.model.device)  # the snapshot copies it back to the CPU
        self.model.train()
        self.progress.begin(state)
        while state.batch_index < state.steps_per_epoch and state.step < state.total_steps:
            start = state.batch_index * train.batch_size
            pressed = self.step(order[start : start + train.batch_size], interrupted)
            state.batch_index += 1
            self.progress.advance(state)
            state.epoch_seconds = time.perf_counter() - started
            at_checkpoint = train.checkpoint_every and state.step % train.checkpoint_every == 0
            more_to_come = state.batch_index < state.steps_per_epoch and state.step < state.total_steps
            if pressed or (at_checkpoint and more_to_come):
                self.save()
            if pressed:
                self.progress.end()
                raise TrainingInterrupted(
                    f"interrupted at epoch {state.epoch}, step {state.step}"
                    + ("; progress saved" if self.checkpointer is not None else "")
                )
        self.progress.end()
        return started

    def validate(self) -> ElboSummary | None:
        """Validation -ELBO of the whole validation set (each rank scores its share), or a WAE's
        reconstruction cost (metrics/elbo.py set_figure); None without one."""
        train, cluster = self.config.train, self.cluster
        if self.val_count == 0:
            return None
        seed = train.seed + EVAL_SEED_OFFSET + RANK_SEED_STRIDE * cluster.rank
        val = set_figure(
            self.model,
            self.val_images,
            self.config.data,
            train.eval_batch_size,
            seed=seed,
            labels=self.val_labels,
            objective=self.config.objective.name,
        )
        return across_ranks(val, self.model, self.config) if cluster.active else val

    def report_epoch(self, started: float) -> EpochReport:
        """Validate, track the best validation figure, and sum up the epoch over all ranks."""
        train, state = self.config.train, self.state
        train_seconds = time.perf_counter() - started
        epoch_sums = all_sum(torch.cat([state.totals, state.totals.new_tensor([state.counted])]))
        means = (epoch_sums[:-1] / max(1.0, float(epoch_sums[-1]))).tolist()
        loss_mean, recon_mean, kl_mean = means[:3]
        if epoch_sums[-1] == 0:  # not one step of the epoch reached the weights
            raise TrainingDiverged(
                f"every step of epoch {state.epoch} had a non-finite loss or gradient, so nothing was learned: "
                "check the settings that scale the loss (--sigma, --lr, the objective's weights) and train again"
            )
        val = self.validate()
        improved = val is not None and state.record_validation(val.nelbo_nats)
        return EpochReport(
            epoch=state.epoch,
            step=state.step,
            beta=beta_at(state.step, train.beta, train.warmup_steps),
            train_loss=loss_mean,
            train_recon_nats=recon_mean,
            train_kl_nats=kl_mean,
            val=val,
            keep=improved or self.keeps_last_epoch,
            best_val_nats=state.best_val if val is not None else None,
            epochs_since_best=state.epochs_since_best,
            epoch_seconds=time.perf_counter() - started,
            images_per_second=min(state.n_images, state.batch_index * train.batch_size) / train_seconds
            if math.isfinite(train_seconds) and train_seconds > 0
            else 0.0,
            skipped_steps=state.skipped_this_epoch,
            train_terms=dict(zip(self.term_names, means[3:], strict=True)),
        )

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper while the process group lives: it sits in
        reference cycles, and collected later (or at interpreter exit, after the group is
        destroyed) its gloo work objects can abort the process (std::terminate)."""
        self.objective = None
        if self.cluster.active:
            gc.collect()


def train_model(
    model: VAE,
    splits: DatasetSplits,
    config: RunConfig,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    checkpointer: Checkpointer | None = None,
    resume: Snapshot | None = None,
    cluster: Cluster = SINGLE,
) -> list[EpochReport]:
    """Train `model` (already on its device) until `config.train.epochs` epochs are done.

    `checkpointer` receives a resumable snapshot every `checkpoint_every` steps, at the end of
    every epoch and on Ctrl-C; `resume` is such a snapshot to continue from.

    With several ranks (`cluster`, process group started), every rank calls train_model with the same
    config: each global batch of `batch_size` images is split between the ranks, gradients are
    averaged by DistributedDataParallel, metrics are summed over ranks, and only rank 0 calls the
    checkpointer (pass callbacks on rank 0 only).
    """
    step_listeners = [callback.on_step for callback in callbacks if hasattr(callback, "on_step")]
    trainer = Trainer(model, splits, config, cluster, checkpointer, progress, resume, step_listeners)
    state = trainer.state
    early_stopping = EarlyStopping(config.train.early_stopping, config.train.epochs, trainer.say)
    reports = []
    try:
        with deferred_interrupt() as interrupted:
            while state.epoch <= config.train.epochs and not state.stopped:
                started = trainer.train_epoch(interrupted)
                report = trainer.report_epoch(started)
                reports.append(report)
                for callback in (*callbacks, early_stopping):
                    callback.on_epoch_end(model, report)
                state.stopped = early_stopping.triggered or state.step >= state.total_steps
                state.end_epoch()
                trainer.save()
    finally:
        trainer.release()
        for callback in callbacks:  # what a callback holds open (TensorBoard's event file) is written out, crash or not
            close = getattr(callback, "close", None)
            if close is not None:
                close()
    return reports
