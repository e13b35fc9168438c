"""Latent codes for use elsewhere: the posterior q(z|x) of every item, its mean and standard
deviation (and, for a two-layer model, z1's given z2 at its mean), as arrays or a file.

Use the mean downstream (as features for a classifier, for retrieval, for plots): it is the
posterior's best single estimate and does not change from one call to the next; the standard
deviation says how sure the encoder is, per dimension. A draw z ~ q(z|x) only adds noise.

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
from vaekit.models.ladder import LadderVAE, precision_weighted

CODE_SUFFIXES = (".npz", ".csv")


@dataclass(frozen=True)
class Codes:
    """Posterior means and standard deviations, float32 (N, Z); `bottom_*` (N, Z1) for z1 of a
    two-layer model, whose `mean`/`std` are then z2's."""

    mean: np.ndarray
    std: np.ndarray
    bottom_mean: np.ndarray | None = None
    bottom_std: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays: z_mean, z_std; or z2_mean, z2_std, z1_mean, z1_std for two layers."""
        if self.bottom_mean is None or self.bottom_std is None:
            return {"z_mean": self.mean, "z_std": self.std}
        return {"z2_mean": self.mean, "z2_std": self.std, "z1_mean": self.bottom_mean, "z1_std": self.bottom_std}


@torch.inference_mode()
def encode_batch(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Model inputs (B, C, H, W) (and a conditional model's labels (B,)) -> (mean, std) of q(z|x),
    then z1's for a two-layer model."""
    posterior = model.encode(x, y)
    if not isinstance(model, LadderVAE):
        return posterior.mu, posterior.std
    bottom = precision_weighted(posterior.bottom_up, model.top_down(posterior.mu))  # type: ignore[attr-defined]
    return posterior.mu, posterior.std, bottom.mu, bottom.std


def codes_of(model: VAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> Codes:
    """The codes of model inputs (with their labels, or None) given batch by batch, in order."""
    model.eval()
    parts = [[t.float().cpu().numpy() for t in encode_batch(model, x, y)] for x, y in batches]
    return Codes(*(np.concatenate(column) for column in zip(*parts, strict=True)))


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
    with columns z_mean_0 ... z_std_0 ... (z2_*, z1_* for two layers); atomically."""
    path = Path(path)
    arrays = codes.arrays()
    count = len(codes.mean)
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
