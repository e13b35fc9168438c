"""What happens around the training loop: the per-epoch report and the callbacks that act on it
(writing the run folder, printing, early stopping), and the per-epoch progress bar.

The loop knows only the `Callback` protocol; a library user passes their own to `fit`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vaekit.atomic import append_line
from vaekit.checkpoint import save_checkpoint
from vaekit.config import DataConfig, RunConfig
from vaekit.data import DatasetSplits
from vaekit.data.transforms import to_model_input, to_unit_range
from vaekit.metrics.elbo import ElboSummary
from vaekit.models import VAE
from vaekit.progress import progress_bar, write
from vaekit.training.state import EVAL_SEED_OFFSET, TrainerState
from vaekit.viz.grid import reconstruction_grid, sample_grid, save_png

PICTURE_ORIGINALS = 32  # validation images in each epoch's reconstruction picture (4 rows of 8)
PICTURE_SAMPLES = 64
POSTFIX_EVERY = 50  # steps between updates of the bar's running means (each one syncs the device)


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    step: int  # optimiser steps so far
    beta: float  # KL weight at the end of the epoch
    train_loss: float  # mean objective per image (nats when beta = 1)
    train_recon_nats: float
    train_kl_nats: float
    val: ElboSummary | None  # None without a validation set
    keep: bool  # these are the weights to keep: the best validation so far, or the last epoch (loop.kept_weights)
    best_val_nats: float | None  # the lowest validation -ELBO so far, this epoch's included
    epochs_since_best: int
    epoch_seconds: float
    images_per_second: float
    skipped_steps: int  # steps skipped this epoch because the loss or a gradient was not finite
    # the objective's own terms by name (units in the names: mi_nats, tc_nats; mmd is unitless),
    # means per item over the epoch; empty for the ELBO and IWAE
    train_terms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StepReport:
    """One optimiser step, for callbacks that also have `on_step` (this rank's share of the batch)."""

    step: int  # optimiser steps so far, this one included
    loss: float  # mean objective per image of the batch
    recon_nats: float
    kl_nats: float
    beta: float
    lr: float
    terms: dict[str, float] = field(default_factory=dict)  # the objective's own, as in EpochReport


class Callback(Protocol):
    """Called after every epoch; a callback may also define on_step(report: StepReport), called
    after every optimiser step that was taken (skipped ones are not reported), and close(), called
    once when training ends or stops (a crash included), to write out what it holds."""

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None: ...


class EarlyStopping:
    """Asks the loop to stop when validation -ELBO has not improved for `patience` epochs.

    Runs on every rank of a distributed run (the validation figure is the same everywhere, so
    every rank decides alike); its decision lives in the resumable state, not here."""

    def __init__(self, patience: int, epochs: int, say: Callable[[str], None]) -> None:
        self.patience = patience
        self.epochs = epochs
        self.say = say
        self.triggered = False

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None:
        if not self.patience or report.epochs_since_best < self.patience or report.epoch >= self.epochs:
            return
        assert report.best_val_nats is not None  # config: early stopping needs a validation set
        self.triggered = True
        self.say(
            f"early stopping after epoch {report.epoch}: validation -ELBO has not improved for {self.patience} "
            f"epoch(s) (best {report.best_val_nats:.2f} nats/image)"
        )


class EpochProgress:
    """The progress bar of the epoch in progress, with the running means of the loss and its parts."""

    def __init__(self, enabled: bool, epochs: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.bar: Any = None

    def begin(self, state: TrainerState) -> None:
        self.bar = progress_bar(
            self.enabled,
            total=state.steps_per_epoch,
            initial=state.batch_index,
            desc=f"epoch {state.epoch}/{self.epochs}",
            leave=False,
        )

    def advance(self, state: TrainerState) -> None:
        assert self.bar is not None
        self.bar.update(1)
        if self.bar.disable:
            return
        if state.batch_index % POSTFIX_EVERY == 0 or state.batch_index == state.steps_per_epoch:
            loss, recon, kl = (state.totals / max(1, state.counted)).tolist()
            self.bar.set_postfix(loss=f"{loss:.2f}", recon=f"{recon:.2f}", kl=f"{kl:.2f}")

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunWriter:
    """Writes metrics, checkpoints (last, and best on validation) and pictures into a run folder."""

    def __init__(self, run_dir: Path, config: RunConfig, splits: DatasetSplits, device: torch.device) -> None:
        self.run_dir = run_dir
        self.config = config
        # The same originals, and prior draws from the same seed, every epoch: the pictures show progress.
        shown = splits.val if len(splits.val) else splits.train  # --val-size 0: the first training images
        self.fixed_images = torch.from_numpy(np.asarray(shown.images[:PICTURE_ORIGINALS])).to(device)
        labels = None if shown.labels is None else shown.labels[:PICTURE_ORIGINALS]
        # a conditional model's labels for them (int64 on the device); None otherwise
        self.fixed_labels = (
            None if labels is None or not config.model.conditional else torch.from_numpy(labels).to(device)
        )
        self.latest_pictures: dict[str, np.ndarray] = {}

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None:
        line = {
            "epoch": report.epoch,
            "step": report.step,
            "beta": report.beta,
            "train_loss_nats": report.train_loss,
            "train_recon_nats": report.train_recon_nats,
            "train_kl_nats": report.train_kl_nats,
            **{f"train_{name}": value for name, value in report.train_terms.items()},
            **(report.val.to_dict(prefix="val_") if report.val is not None else {}),
            "epoch_seconds": report.epoch_seconds,
            "train_images_per_second": report.images_per_second,
            "skipped_steps": report.skipped_steps,  # steps with a non-finite loss or gradient
        }
        append_line(self.run_dir / "metrics.jsonl", json.dumps(line))
        val = None if report.val is None else report.val.nelbo_nats
        info = {"epoch": report.epoch, "step": report.step, "val_nelbo_nats": val}
        save_checkpoint(self.run_dir / "checkpoints" / "last.safetensors", model, self.config, info)
        if report.keep:
            save_checkpoint(self.run_dir / "checkpoints" / "best.safetensors", model, self.config, info)
        self.save_pictures(model, report.epoch)

    @torch.no_grad()
    def picture_grids(self, model: VAE) -> dict[str, np.ndarray]:
        """This epoch's pictures, uint8 (H, W, C): the fixed originals over their reconstructions,
        and prior samples from a fixed seed; none for a table, whose rows are not pictures."""
        if self.config.data.is_table:
            return {}
        model.eval()
        data = self.config.data
        originals = to_model_input(self.fixed_images, DataConfig(pixel_range=data.pixel_range))
        x = to_model_input(self.fixed_images, data, torch.Generator(model.device).manual_seed(0))
        recon = model.reconstruct(x, self.fixed_labels)
        grid = reconstruction_grid(to_unit_range(originals, data), to_unit_range(recon, data))
        pictures = {"recon": grid}
        if model.can_sample:  # a VQ-VAE generates once its prior over codes is trained, after training
            # From the model's own prior (a learned one included; ancestral for two layers), as E[x|z].
            generator = torch.Generator(model.device).manual_seed(self.config.train.seed + EVAL_SEED_OFFSET)
            drawn = model.sample(PICTURE_SAMPLES, generator, y=model.cycled_labels(PICTURE_SAMPLES))
            pictures["samples"] = sample_grid(to_unit_range(drawn, data))
        model.train()
        return pictures

    def save_pictures(self, model: VAE, epoch: int) -> None:
        self.latest_pictures = self.picture_grids(model)  # kept for other callbacks of this epoch (TensorBoard)
        for name, grid in self.latest_pictures.items():
            save_png(self.run_dir / "images" / f"{name}_epoch{epoch:03d}.png", grid, scale=2)


class ConsoleReport:
    """Prints one line per epoch (through tqdm's write, so progress bars stay intact)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None:
        terms = "".join(f"{name} {value:.3g}  " for name, value in report.train_terms.items())
        write(
            f"epoch {report.epoch}/{self.epochs}  train loss {report.train_loss:.2f}  {terms}"
            f"{'no validation set' if report.val is None else 'val ' + report.val.line()}  "
            f"beta {report.beta:.3g}  {report.epoch_seconds:.1f} s",
            file=sys.stderr,
        )
