"""Likelihoods over the 256 levels of 8-bit pixels scaled to [-1, 1] (level k at k / 127.5 - 1):
one discretised logistic per pixel, or a mixture of them (Salimans et al. 2017,
https://arxiv.org/abs/1701.05517). Proper discrete likelihoods: their nats convert to bits/dim
directly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.likelihoods.base import Support, sum_pixels
from vaekit.methods import MethodSpec, setting

HALF_BIN = 1.0 / 255.0  # half the width of one of 256 levels on [-1, 1]


def discretized_logistic_log_mass(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(level x) under a logistic(mean, exp(log_scale)) binned to the 256 levels of [-1, 1]:
    the mass in x's bin of width 2/255, the two end bins stretched to -inf and +inf so the 256
    probabilities sum to one (Salimans et al. 2017, https://arxiv.org/abs/1701.05517).
    Elementwise over broadcast shapes."""
    log_scale = log_scale.clamp(min=-7.0)
    inv_scale = torch.exp(-log_scale)
    centred = x - mean
    upper = inv_scale * (centred + HALF_BIN)
    lower = inv_scale * (centred - HALF_BIN)
    log_cdf_upper = F.logsigmoid(upper)  # log P(X <= x + half bin), for the bottom level
    log_survival_lower = -F.softplus(lower)  # log P(X > x - half bin), for the top level
    # log(sigmoid(upper) - sigmoid(lower)), computed stably where the bin holds real mass, and
    # from the density at the bin centre (times the bin width) where the difference underflows.
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    log_mass = torch.log(mass.clamp(min=1e-12))
    mid = inv_scale * centred
    log_density_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2.0 * HALF_BIN)
    interior = torch.where(mass > 1e-5, log_mass, log_density_mid)
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_survival_lower, interior))


def logistic_sample_levels(
    mean: torch.Tensor, log_scale: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """A draw from the discretised logistic: a logistic draw (inverse CDF) rounded to the nearest
    of the 256 levels of [-1, 1], values beyond the end levels going to them (the open end bins)."""
    u = torch.rand(mean.shape, generator=generator, device=mean.device).clamp(1e-6, 1.0 - 1e-6)
    x = mean + torch.exp(log_scale.clamp(min=-7.0)) * (torch.log(u) - torch.log1p(-u))
    return ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) / 127.5 - 1.0


class DiscretizedLogisticLikelihood(nn.Module):
    """p(x|z) over the 256 levels of 8-bit pixels, scaled to [-1, 1] (level k at k / 127.5 - 1):
    one discretised logistic per pixel (see discretized_logistic_log_mass). The decoder outputs
    the mean; the log-scale is learned per pixel. A proper discrete likelihood: its nats convert
    to bits/dim directly."""

    support: Support = "levels"
    title = "discretised logistic"
    params_per_channel = 1

    def __init__(self, sigma: float, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        # A logistic with scale s has standard deviation s * pi / sqrt(3); start at `sigma`.
        self.log_scale = nn.Parameter(torch.full(image_shape, math.log(sigma * math.sqrt(3.0) / math.pi)))

    def log_prob_per_pixel(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return discretized_logistic_log_mass(x, mean, self.log_scale)

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return sum_pixels(self.log_prob_per_pixel(x, mean))

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean.clamp(-1.0, 1.0)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return logistic_sample_levels(mean, self.log_scale.expand_as(mean), generator)


class MixtureOfLogisticsLikelihood(nn.Module):
    """Each pixel's 256 levels from a mixture of M discretised logistics whose weights, means and
    scales the decoder predicts per pixel (PixelCNN++'s output distribution, Salimans et al.
    2017, without its autoregressive coupling of colour channels: given z the channels are
    independent). Multi-modal pixels (a pixel either background or bright) get one mode each,
    which a single logistic or Gaussian smears. The decoder outputs (B, 3 M C, H, W)."""

    support: Support = "levels"
    title = "mixture of discretised logistics"

    def __init__(self, components: int, sigma: float) -> None:
        super().__init__()
        self.components = components
        self.params_per_channel = 3 * components
        # Initial scale offset so that a zero decoder output means a logistic of std `sigma`.
        self.log_scale_offset = math.log(sigma * math.sqrt(3.0) / math.pi)

    def split(self, decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3 M C, H, W) -> log mixture weights, means, log-scales, each (B, M, C, H, W)."""
        b, _, h, w = decoded.shape
        params = decoded.view(b, 3, self.components, -1, h, w)
        log_weights = F.log_softmax(params[:, 0], dim=1)
        means = torch.tanh(params[:, 1])  # inside [-1, 1], where the levels are
        log_scales = params[:, 2] + self.log_scale_offset
        return log_weights, means, log_scales

    def log_prob_per_pixel(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        log_weights, means, log_scales = self.split(decoded)
        log_mass = discretized_logistic_log_mass(x.unsqueeze(1), means, log_scales)  # (B, M, C, H, W)
        return torch.logsumexp(log_weights + log_mass, dim=1)  # (B, C, H, W)

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return sum_pixels(self.log_prob_per_pixel(x, decoded))

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        log_weights, means, _ = self.split(decoded)
        return (log_weights.exp() * means).sum(dim=1)  # E[x|z] per pixel, (B, C, H, W)

    def sample(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        log_weights, means, log_scales = self.split(decoded)  # (B, M, C, H, W) each
        # A component per pixel by the Gumbel-max trick, then a draw from that discretised logistic.
        u = torch.rand(log_weights.shape, generator=generator, device=decoded.device).clamp(1e-10, 1.0 - 1e-10)
        chosen = (log_weights - torch.log(-torch.log(u))).argmax(dim=1, keepdim=True)  # (B, 1, C, H, W)
        mean, log_scale = means.gather(1, chosen)[:, 0], log_scales.gather(1, chosen)[:, 0]
        return logistic_sample_levels(mean, log_scale, generator)


_SIGMA_HELP = "gaussian, logistic, logistic-mixture, mixed: fixed sigma, or the initial one when learned"


@dataclass(frozen=True)
class LogisticSettings:
    sigma: float = setting(1.0, _SIGMA_HELP, above=0.0, high=1e6)


@dataclass(frozen=True)
class MixtureSettings:
    components: int = setting(
        5, "logistic-mixture: mixture components per pixel", flag="logistic-components", low=1, high=256
    )
    sigma: float = setting(1.0, _SIGMA_HELP, above=0.0, high=1e6)


_PAPER = "https://arxiv.org/abs/1701.05517"
SPECS = (
    MethodSpec(
        "logistic",
        "a discretised logistic per pixel over its 256 levels in [-1, 1], its scale learned per pixel",
        _PAPER,
        lambda settings, context: DiscretizedLogisticLikelihood(settings.sigma, context.image_shape),
        LogisticSettings,
        needs=frozenset({"symmetric_pixels"}),
    ),
    MethodSpec(
        "logistic-mixture",
        "a mixture of --logistic-components discretised logistics per pixel (PixelCNN++'s output)",
        _PAPER,
        lambda settings, context: MixtureOfLogisticsLikelihood(settings.components, settings.sigma),
        MixtureSettings,
        needs=frozenset({"symmetric_pixels"}),
    ),
)
