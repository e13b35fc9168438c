"""The Laplace likelihood p(x|z) = prod 1/(2b) exp(-|x - mu| / b): the summed absolute error
(L1) of image-to-image work made a density, as the Gaussian makes the squared error one. Its
scale b fixed, one learned, or one learned per pixel (or per feature of a table); heavier tails
than the Gaussian's, so a few badly reconstructed pixels cost linearly, not quadratically. A
density: its nats become bits/dim only through dequantisation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vaekit.likelihoods.base import ScaleMode, Support, floored, register_log_scale, sum_pixels
from vaekit.methods import MethodSpec, setting

# A learned scale is kept above 1e-3, as the Gaussian's standard deviation is (likelihoods/gaussian.py).
MIN_LOG_SCALE = math.log(1e-3)


class LaplaceLikelihood(nn.Module):
    """p(x|z) = Laplace(x; decoder output mu, b) per pixel, b fixed, learned, or learned per pixel."""

    support: Support = "continuous"
    title = "Laplace"
    params_per_channel = 1
    log_scale: torch.Tensor  # a buffer or a parameter (register_log_scale)

    def __init__(self, scale: str, initial: float, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.scale = scale
        register_log_scale(self, "log_scale", scale, math.log(initial), image_shape)

    @property
    def effective_log_scale(self) -> torch.Tensor:
        """log b in use: a learned one through a smooth floor at MIN_LOG_SCALE (the Gaussian's, in
        log b rather than log b^2, so as sharp: within e^-11 of the identity at b = 0.3), a fixed
        one as given."""
        return self.log_scale if self.scale == "fixed" else floored(self.log_scale, MIN_LOG_SCALE, sharpness=2.0)

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        log_b = self.effective_log_scale
        return -sum_pixels((x - mean).abs() * torch.exp(-log_b) + log_b + math.log(2.0))

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inverse CDF: x = mu - b sign(u) log(1 - 2|u|) for u ~ U(-1/2, 1/2)."""
        u = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype) - 0.5
        return mean - torch.exp(self.effective_log_scale) * torch.sign(u) * torch.log1p(-2.0 * u.abs())


@dataclass(frozen=True)
class LaplaceSettings:
    scale: ScaleMode = setting(
        "fixed", "laplace: a fixed scale b, or a learned global / per-pixel one", flag="laplace-scale"
    )
    b: float = setting(
        0.1, "laplace: the fixed scale b, or the initial one when learned", flag="laplace-b", above=0.0, high=1e6
    )


SPECS = (
    MethodSpec(
        "laplace",
        "Laplace(x; decoder mean, b): the L1 error as a density, b fixed or learned (globally or per pixel)",
        "",
        lambda settings, context: LaplaceLikelihood(settings.scale, settings.b, context.image_shape),
        LaplaceSettings,
        offers=frozenset({"density", "table_rows"}),
    ),
)
