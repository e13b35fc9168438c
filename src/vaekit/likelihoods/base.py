"""What every likelihood gives the model, the metrics and the decoders (the `Likelihood`
protocol), and what building one may read (`LikelihoodContext`).

Shape letters: B batch, C channels, H, W image (a table's row is (D, 1, 1)), P decoder outputs.
Every log-probability is per item, shape (B,), in nats; the caller reduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

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


def sum_pixels(values: torch.Tensor) -> torch.Tensor:
    """Per-pixel values summed per item: (B, C, H, W) -> (B,)."""
    return values.flatten(start_dim=1).sum(dim=1)
