"""The Gaussian likelihood p(x|z) = N(x; decoder mean, sigma^2): sigma fixed (the summed squared
error of the tutorials, scaled), one learned, or one learned per pixel (or per feature of a
table). A density: its nats become bits/dim only through dequantisation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vaekit.distributions import LOG_2PI
from vaekit.likelihoods.base import ScaleMode, Support, floored, register_log_scale, sum_pixels
from vaekit.methods import MethodSpec, setting

# A learned Gaussian likelihood's variance is kept above (1e-3)^2: narrower than an 8-bit pixel's
# bin (width 1/256 on [0, 1], std of a uniform in it 0.0011) a density only grows on gridded data.
MIN_LOGVAR = 2.0 * math.log(1e-3)


class GaussianLikelihood(nn.Module):
    """p(x|z) = N(x; decoder mean, sigma^2) with sigma fixed, one learned, or learned per pixel."""

    support: Support = "continuous"
    title = "Gaussian"
    params_per_channel = 1
    logvar: torch.Tensor  # a buffer or a parameter (register_log_scale)

    def __init__(self, variance: str, sigma: float, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.variance = variance
        register_log_scale(self, "logvar", variance, 2.0 * math.log(sigma), image_shape)

    @property
    def effective_logvar(self) -> torch.Tensor:
        """The log-variance in use: a learned one through a smooth floor at MIN_LOGVAR (the
        identity well above it, and never a dead gradient below it); a fixed one as given."""
        return self.logvar if self.variance == "fixed" else floored(self.logvar, MIN_LOGVAR)

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        logvar = self.effective_logvar
        return -0.5 * sum_pixels((x - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * self.effective_logvar) * noise


@dataclass(frozen=True)
class GaussianSettings:
    variance: ScaleMode = setting(
        "fixed", "gaussian: fixed sigma, or a learned global / per-pixel variance", flag="gaussian-variance"
    )
    sigma: float = setting(
        1.0,
        "gaussian, logistic, logistic-mixture, mixed: fixed sigma, or the initial one when learned",
        above=0.0,
        high=1e6,
    )


SPECS = (
    MethodSpec(
        "gaussian",
        "N(x; decoder mean, sigma^2), sigma fixed or learned (globally or per pixel)",
        "https://arxiv.org/abs/1312.6114",
        lambda settings, context: GaussianLikelihood(settings.variance, settings.sigma, context.image_shape),
        GaussianSettings,
        offers=frozenset({"density", "table_rows"}),
    ),
)
