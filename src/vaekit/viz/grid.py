"""Image grids as PNG files (Pillow only). Inputs are float arrays in [0, 1], (N, C, H, W).

The two grids every part of vaekit draws (training pictures, `vaekit sample` and `reconstruct`,
the gallery) are `reconstruction_grid` and `sample_grid`, so they look the same everywhere.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaekit.atomic import write_with

GRID_COLUMNS = 8  # originals per row in every reconstruction grid


def make_grid(images: np.ndarray | torch.Tensor, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> one uint8 picture (rows*H', cols*W', C) with light gaps."""
    array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    n, c, h, w = array.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, dtype=np.uint8)
    pixels = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)  # -> (N, H, W, C)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def _pil_image(picture: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def save_png(path: str | Path, picture: np.ndarray, scale: int = 1) -> None:
    """Write an (H, W, C) uint8 picture atomically, enlarged `scale` times (nearest neighbour)."""
    image = _pil_image(picture, scale)
    write_with(path, lambda handle: image.save(handle, format="PNG"))


def png_bytes(picture: np.ndarray, scale: int = 1) -> bytes:
    """An (H, W, C) uint8 picture as PNG file contents, enlarged `scale` times."""
    buffer = io.BytesIO()
    _pil_image(picture, scale).save(buffer, format="PNG")
    return buffer.getvalue()


def interleave_rows(originals: torch.Tensor, reconstructions: torch.Tensor, columns: int) -> torch.Tensor:
    """Rows of originals each followed by the row of their reconstructions, (2N, C, H, W)."""
    pairs = []
    for start in range(0, len(originals), columns):
        pairs += [originals[start : start + columns], reconstructions[start : start + columns]]
    return torch.cat(pairs)


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor) -> np.ndarray:
    """Each row of originals over the row of their reconstructions; both (N, C, H, W) in [0, 1]."""
    return make_grid(interleave_rows(originals, reconstructions, GRID_COLUMNS), GRID_COLUMNS)


def sample_grid(images: torch.Tensor) -> np.ndarray:
    """Samples (N, C, H, W) in [0, 1] as a square grid (ceil(sqrt(N)) columns: 8 for 64)."""
    return make_grid(images, math.ceil(math.sqrt(len(images))))


BAR_HEIGHT = 41  # pixels; odd, so the zero line is one row
BAR_WIDTH = 3  # pixels per feature, then a one-pixel gap
BAR_CLIP = 3.0  # standard deviations shown above and below the zero line


def feature_bars(standardised: torch.Tensor) -> torch.Tensor:
    """A table's rows as pictures: one vertical bar per feature, up for above the training mean,
    down for below, full height at +-3 standard deviations. (N, 1, 1, D) -> (N, 1, H, 4 D) in [0, 1]."""
    values = standardised.flatten(1).clamp(-BAR_CLIP, BAR_CLIP).cpu()  # (N, D)
    middle = BAR_HEIGHT // 2
    reach = (values / BAR_CLIP * middle).round().long()  # (N, D) rows above (+) or below (-) the zero line
    rows = torch.arange(BAR_HEIGHT)[None, :, None]  # (1, H, 1)
    top = (middle - reach.clamp(min=0))[:, None, :]  # (N, 1, D)
    bottom = (middle - reach.clamp(max=0))[:, None, :]
    bars = ((rows >= top) & (rows <= bottom)).float()  # (N, H, D)
    bars[:, middle, :] = bars[:, middle, :].clamp(min=0.5)  # the zero line, grey where no bar leaves it
    wide = bars.repeat_interleave(BAR_WIDTH + 1, dim=2)  # (N, H, D * (width + 1))
    wide[:, :, BAR_WIDTH :: BAR_WIDTH + 1] = 0.0  # a dark gap after each bar
    return wide[:, None]  # (N, 1, H, D * (width + 1))
