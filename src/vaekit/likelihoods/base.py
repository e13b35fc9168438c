"""What every likelihood gives the model, the metrics and the decoders (the `Likelihood`
protocol), and what building one may read (`LikelihoodContext`).

Shape letters: B batch, C channels, H, W image (a table's row is (D, 1, 1)), P decoder outputs.
Every log-probability is per item, shape (B,), in nats; the caller reduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.data.columns import TableSchema
from vaekit.errors import VaekitError

# What x may be: "binary" (0 or 1: a probability mass only on binary data), "levels" (a mass over
# the 256 levels of 8-bit pixels), or "continuous" (a density, a probability only once the pixels
# are dequantised). metrics/meaning.py turns this into what a figure may be called.
Support = Literal["binary", "levels", "continuous"]


class Likelihood(Protocol):
    """p(x|z) given the decoder's output `decoded`, (B, P, H, W) with P = C * params_per_channel."""

    support: Support
    title: str  # its name in reports: "Bernoulli", "Gaussian", ...
    params_per_channel: int  # decoder outputs per image channel

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per item, (B, C, H, W) -> (B,), in nats."""
        ...

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in model scale, (B, C, H, W)."""
        ...

    def sample(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z) in model scale, (B, C, H, W)."""
        ...


@dataclass(frozen=True)
class LikelihoodContext:
    """What building a likelihood may read beyond its own settings (methods.MethodSpec.build)."""

    image_shape: tuple[int, int, int]  # (C, H, W): a learned variance or scale per pixel has this shape
    table: TableSchema | None = None  # a table's columns by kind (data/columns.py); None for images


# How a likelihood's scale is had: fixed as given, one learned number, or one learned per pixel.
ScaleMode = Literal["fixed", "global", "pixel"]


def register_log_scale(
    module: nn.Module, name: str, mode: str, initial: float, image_shape: tuple[int, int, int]
) -> None:
    """Give `module` its log-scale `name` at `initial`: a buffer when `mode` is fixed, a learned
    number when global, a learned (C, H, W) map when pixel."""
    value = torch.full((), initial)
    if mode == "fixed":
        module.register_buffer(name, value)
    elif mode in ("global", "pixel"):
        module.register_parameter(name, nn.Parameter(value if mode == "global" else value.expand(image_shape).clone()))
    else:
        raise VaekitError(f"unknown scale {mode!r} for {name}: use fixed, global or pixel")


def floored(value: torch.Tensor, floor: float, sharpness: float = 1.0) -> torch.Tensor:
    """`value` through a smooth floor: the identity well above `floor`, never below it, and never
    a dead gradient (floor + softplus(value - floor), `sharpness` its softplus's beta)."""
    return floor + F.softplus(value - floor, beta=sharpness)


def sum_pixels(values: torch.Tensor) -> torch.Tensor:
    """Per-pixel values summed per item: (B, C, H, W) -> (B,)."""
    return values.flatten(start_dim=1).sum(dim=1)
