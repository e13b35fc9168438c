"""Latent codes for use elsewhere: what q(z|x) says about every item, as arrays or a file.

For the Gaussian posterior that is its mean and standard deviation (and, for a two-layer model,
z1's given z2 at its mean); another posterior family writes its own description (an IAF's
centre and base Gaussian, a vMF's mean direction and concentration). Use the point code (`mean`)
downstream (as features for a classifier, for retrieval, for plots): it is the posterior's best
single estimate and does not change from one call to the next. A draw z ~ q(z|x) only adds noise.

Shapes: N items, B batch, Z latent (Z2 top and Z1 bottom for a two-layer model).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.atomic import write_bytes, write_text
from vaekit.config import DataConfig
from vaekit.data.transforms import labelled_batches
from vaekit.models import VAE

CODE_SUFFIXES = (".npz", ".csv")


@dataclass(frozen=True)
class Codes:
    """Named per-item arrays, float32 (N, ...), in the order they are written: z_mean, z_std for a
    Gaussian; z2_mean, z2_std, z1_mean, z1_std for two layers; z_<name> for another family's
    description (z_centre, z_base_mean, z_base_std for an IAF; z_mean_direction, z_concentration
    for a vMF; z_codes, int64 (N, M) code indices in raster order, for a VQ-VAE). `point` names
    the point code, `mean`."""

    named: dict[str, np.ndarray]
    point: str = "z_mean"

    @property
    def mean(self) -> np.ndarray:
        """The point code (N, Z): the posterior mean for a Gaussian (z2's for two layers)."""
        return self.named[self.point]

    @property
    def std(self) -> np.ndarray | None:
        """The Gaussian posterior's standard deviation (N, Z) (z2's for two layers), else None."""
        return self.named.get("z_std", self.named.get("z2_std"))

    def arrays(self) -> dict[str, np.ndarray]:
        return self.named


@torch.inference_mode()
def encode_batch(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Model inputs (B, C, H, W) (and a conditional model's labels (B,)) -> the named (B, ...)
    arrays that describe q(z|x): its summary, z's for one layer, z2's and z1's for two."""
    return model.describe_codes(x, y)


def point_code(model: VAE) -> str:
    """The name of the point code among encode_batch's arrays."""
    return model.point_code_name


def _as_array(values: torch.Tensor) -> np.ndarray:
    """float32 for codes, int64 for a VQ-VAE's code indices."""
    return (values.float() if values.is_floating_point() else values).cpu().numpy()


def codes_of(model: VAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> Codes:
    """The codes of model inputs (with their labels, or None) given batch by batch, in order."""
    model.eval()
    parts = [encode_batch(model, x, y) for x, y in batches]
    if not parts:  # no items: the names and widths of an empty set's columns
        return Codes({}, point_code(model))
    named = {name: np.concatenate([_as_array(part[name]) for part in parts]) for name in parts[0]}
    return Codes(named, point_code(model))


def encode_items(
    model: VAE,
    items: np.ndarray,
    data: DataConfig,
    batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> Codes:
    """The codes of stored items (uint8 images or a table's float rows, (N, C, H, W)), in order.
    The seed fixes the noise of data prepared stochastically (--binarize, --dequantize)."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    batches = labelled_batches(items, labels, data, batch_size, model.device, generator)
    return codes_of(model, batches)


def write_codes(path: str | Path, codes: Codes, labels: np.ndarray | None) -> None:
    """index, label (when there are labels) and the codes: .npz arrays, or one CSV row per item
    with columns z_mean_0 ... z_std_0 ... (z2_*, z1_* for two layers, each family's own names);
    atomically."""
    path = Path(path)
    arrays = codes.arrays()
    count = len(next(iter(arrays.values()))) if arrays else 0
    index = np.arange(count)
    if path.suffix.lower() == ".npz":
        extra = {"label": labels} if labels is not None else {}
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, index=index, **extra, **arrays)
        write_bytes(path, buffer.getvalue())
        return
    header = ["index", *(["label"] if labels is not None else [])]
    for name, array in arrays.items():
        header += [f"{name}_{j}" for j in range(array.shape[1])]
    values = np.concatenate(list(arrays.values()), axis=1)  # (N, all code columns)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    for i in range(count):
        ids = [i, *([int(labels[i])] if labels is not None else [])]
        writer.writerow([*ids, *(f"{v:.7g}" for v in values[i])])
    write_text(path, text.getvalue())
