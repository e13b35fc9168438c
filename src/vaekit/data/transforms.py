"""Per-batch conversion of stored uint8 images into model inputs, and its inverse for display.

Shapes: (B, C, H, W) throughout.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from vaekit.config import DataConfig


def _scaling(config: DataConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A table's per-feature mean and standard deviation (D,) each, or None when none is fitted."""
    if config.feature_mean is None or config.feature_std is None:
        return None
    return torch.tensor(config.feature_mean, device=device), torch.tensor(config.feature_std, device=device)


def standardise(features: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """A table's features in the user's units (B, 1, 1, D) -> standardised, as the model sees them."""
    scaling = _scaling(config, features.device)
    return features.float() if scaling is None else (features.float() - scaling[0]) / scaling[1]


def to_user_units(x: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """Inverse of `standardise`: model-scale features -> the user's units, (B, 1, 1, D)."""
    scaling = _scaling(config, x.device)
    return x if scaling is None else x * scaling[1] + scaling[0]


def to_model_input(batch: torch.Tensor, config: DataConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 pixels -> float in [0,1], optionally binarised or dequantised (sampled), or scaled to [-1,1];
    a table's float features -> standardised."""
    if batch.is_floating_point():
        return standardise(batch, config)
    if config.dequantize:
        # Uniform dequantisation (Theis et al. 2016): level k becomes a uniform draw from its bin
        # [k/256, (k+1)/256), and the 256 bins tile [0, 1], so a density's integral over a bin is
        # the probability of the level (see metrics/meaning.py for the bound this gives).
        noise = torch.rand(batch.shape, generator=generator, device=batch.device)
        x = batch.float().add_(noise).div_(256.0)
    else:
        x = batch.float().div_(255.0)
    if config.binarize:
        # Dynamic binarisation: each pixel is 1 with probability equal to its intensity, resampled
        # every time, so the model sees fresh binary data each epoch (Salakhutdinov & Murray 2008).
        x = torch.bernoulli(x, generator=generator)
    if config.pixel_range == "symmetric":
        x = x.mul_(2.0).sub_(1.0)
    return x


def model_batches(
    images: np.ndarray | torch.Tensor,
    config: DataConfig,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Stored uint8 images (N, C, H, W) or float vectors (N, 1, 1, D) as model inputs on `device`, batch
    by batch, in order."""
    stored = torch.as_tensor(images)
    for start in range(0, len(stored), batch_size):
        yield to_model_input(stored[start : start + batch_size].to(device, non_blocking=True), config, generator)


def labelled_batches(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | None,
    config: DataConfig,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """`model_batches` with each batch's labels, int64 (B,) on `device`; None in their place when
    there are none (an unconditional model's case)."""
    stored = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    for start, x in zip(
        range(0, len(images), batch_size), model_batches(images, config, batch_size, device, generator), strict=True
    ):
        yield x, None if stored is None else stored[start : start + batch_size].to(device)


def to_unit_range(x: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """Model-scale images -> [0, 1] for display."""
    if config.pixel_range == "symmetric":
        x = (x + 1.0) / 2.0
    return x.clamp(0.0, 1.0)


def pixel_bin_width(config: DataConfig) -> float:
    """Width of one of the 256 bins that tile the model's pixel range ([0, 1] or [-1, 1]): the bins
    dequantised pixels are drawn from (a density times it bounds a level's probability)."""
    return (2.0 if config.pixel_range == "symmetric" else 1.0) / 256.0


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Bilinear (antialiased) resize of uint8 (N, C, H, W) to (N, C, size, size), in chunks."""
    if images.shape[-2:] == (size, size):
        return images
    out = np.empty((*images.shape[:2], size, size), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(images[start : start + chunk]).float()
        resized = F.interpolate(block, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB for uint8 (N, C, H, W); ITU-R 601 luma for RGB -> grey."""
    have = images.shape[1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
    return np.rint((images.astype(np.float32) * weights).sum(axis=1, keepdims=True)).astype(np.uint8)
