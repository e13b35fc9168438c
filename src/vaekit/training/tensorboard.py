"""`--tensorboard DIR`: the run as TensorBoard sees it. Per optimiser step the loss and its parts,
beta and the learning rate; per epoch the validation figures, the KL of each latent dimension, the
active units and the run's pictures. Rank 0 alone writes (callbacks live there). A resumed run
first discards whatever was logged after its snapshot's step (TensorBoard's purge_step), so no
step appears twice.

TensorBoard is an optional dependency: `pip install tensorboard`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vaekit.config import RunConfig
from vaekit.data import DatasetSplits
from vaekit.errors import VaekitError
from vaekit.metrics.latents import latent_usage
from vaekit.models import VAE
from vaekit.training.callbacks import EpochReport, StepReport

USAGE_ITEMS = 2000  # items the per-epoch KL per dimension and active units are measured on


def require_tensorboard() -> None:
    """Fail before any work (and before the run folder exists) when the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  # only whether it imports
    except ImportError:
        raise VaekitError(
            "--tensorboard needs the tensorboard package: pip install tensorboard (or leave --tensorboard out)"
        ) from None


class TensorBoardLogger:
    def __init__(
        self,
        log_dir: str,
        config: RunConfig,
        splits: DatasetSplits,
        pictures: Callable[[], dict[str, np.ndarray]],
        first_step: int = 0,
    ) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        # Steps up to first_step were logged before the snapshot this run resumes from; anything
        # logged after it is about to be trained again and is purged.
        self.writer = SummaryWriter(log_dir, purge_step=first_step + 1 if first_step > 0 else None)
        self.config = config
        shown = splits.val if len(splits.val) else splits.train  # --val-size 0: the first training items
        self.usage_items = shown.images[:USAGE_ITEMS]
        self.usage_labels = None if shown.labels is None else shown.labels[:USAGE_ITEMS]
        self.pictures = pictures

    def on_step(self, report: StepReport) -> None:
        step = report.step
        self.writer.add_scalar("train/loss_nats", report.loss, step)
        self.writer.add_scalar("train/recon_nats", report.recon_nats, step)
        self.writer.add_scalar("train/kl_nats", report.kl_nats, step)
        self.writer.add_scalar("train/beta", report.beta, step)
        self.writer.add_scalar("train/lr", report.lr, step)
        for name, value in report.terms.items():  # the objective's own: mi_nats, tc_nats, mmd, ...
            self.writer.add_scalar(f"train/{name}", value, step)

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None:
        step = report.step
        self.writer.add_scalar("epoch/epoch", report.epoch, step)
        self.writer.add_scalar("epoch/train_loss_nats", report.train_loss, step)
        for name, value in report.train_terms.items():
            self.writer.add_scalar(f"epoch/train_{name}", value, step)
        if report.val is not None:
            self.writer.add_scalar("epoch/val_nelbo_nats", report.val.nelbo_nats, step)
            self.writer.add_scalar("epoch/val_recon_nats", report.val.recon_nats, step)
            self.writer.add_scalar("epoch/val_kl_nats", report.val.kl_nats, step)
        if model.latent_dim > 0:
            labels = model.conditioning(self.usage_labels, "the validation set")
            usage = latent_usage(model, np.asarray(self.usage_items), self.config.data, labels=labels)
            model.train()
            self.writer.add_scalar("latent/active_units", usage.active_units, step)
            for dim, kl in enumerate(usage.kl_per_dim_nats or ()):  # none for an IAF's or a vMF's KL
                self.writer.add_scalar(f"latent_kl_per_dim/z{dim:03d}", kl, step)
        for name, grid in self.pictures().items():
            self.writer.add_image(name, grid, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Write out every event logged so far (the trainer calls it when training ends, or stops)."""
        self.writer.close()
