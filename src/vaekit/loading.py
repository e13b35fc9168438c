"""A finished run loaded back for use: encoding, decoding, sampling, evaluating, serving.

Imports nothing from training/, so everything that only reads runs (metrics, pictures, the web
app) stays free of the trainer and of torch.distributed's process groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.checkpoint import load_checkpoint
from vaekit.config import RunConfig
from vaekit.data import DatasetSplits, load_dataset
from vaekit.data.tables import default_columns
from vaekit.data.transforms import to_model_input, to_unit_range, to_user_units
from vaekit.devices import resolve_device
from vaekit.errors import VaekitError
from vaekit.models import VAE


@dataclass
class TrainedRun:
    """A finished run loaded back: the model plus what is needed to feed it data."""

    path: Path
    model: VAE
    config: RunConfig
    info: dict[str, Any]

    def prepare(self, images: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> model inputs on the model's device."""
        batch = torch.as_tensor(images).to(self.model.device)
        return to_model_input(batch, self.config.data, generator)

    def to_display(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit_range(x, self.config.data)

    @property
    def is_table(self) -> bool:
        """Trained on vectors (a table) rather than images."""
        return self.config.data.feature_mean is not None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """A table's column names (x0, x1, ... for a run without them)."""
        names = self.config.data.feature_names
        return names if names is not None else default_columns(self.model.image_shape[-1])

    def to_rows(self, x: torch.Tensor) -> np.ndarray:
        """Model-scale items (B, 1, 1, D) of a table -> rows (B, D) in the user's units."""
        return to_user_units(x, self.config.data).flatten(1).cpu().numpy()

    def load_data(self, progress: bool = False) -> DatasetSplits:
        return load_dataset(self.config.data, progress=progress)


def load_run(path: str | Path, checkpoint: str = "best", device: str = "cpu") -> TrainedRun:
    """Load a run folder (or a .safetensors checkpoint file) for encoding, decoding and sampling."""
    path = Path(path)
    if path.is_dir():
        file = path / "checkpoints" / f"{checkpoint}.safetensors"
        if not file.is_file():
            raise VaekitError(
                f"{path} holds no {checkpoint} checkpoint: is it a vaekit run folder that finished an epoch?"
            )
    elif path.is_file():
        file = path
    else:
        raise VaekitError(f"run {path} does not exist: give a run folder written by `vaekit train`")
    model, config, info = load_checkpoint(file, resolve_device(device))
    model.eval()
    return TrainedRun(path, model, config, info)
