"""The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, https://arxiv.org/abs/1907.06845):
the tutorials' binary cross-entropy on grey pixels in [0, 1] plus the log-normaliser that makes
it a density there."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.likelihoods.base import Support, sum_pixels
from vaekit.methods import MethodSpec

# |logit| below which the continuous Bernoulli's normaliser, mean and inverse CDF use their
# series: there lambda is within 0.025 of 1/2 and the closed forms become 0/0.
CB_SERIES_LOGIT = 0.1


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C of the continuous Bernoulli with lambda = sigmoid(logits), elementwise
    (Loaiza-Ganem & Cunningham 2019, https://arxiv.org/abs/1907.06845).

    C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) is, in the logit l, l / tanh(l / 2): an even
    function with C = 2 at l = 0. log C = log|l| - log tanh(|l| / 2), both terms stable for l away
    from 0; near 0 the series log 2 + l^2/12 - 7 l^4/1440 (next term below 1e-9 for |l| < 0.1).
    """
    a = logits.abs()
    small = a < CB_SERIES_LOGIT
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    # log tanh(a / 2) = log(1 - e^-a) - log(1 + e^-a)
    direct = torch.log(safe) - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    series = math.log(2.0) + a.pow(2) / 12.0 - 7.0 * a.pow(4) / 1440.0
    return torch.where(small, series, direct)


class ContinuousBernoulliLikelihood(nn.Module):
    """p(x|z) = prod C(lambda) lambda^x (1 - lambda)^(1 - x) for pixels x in [0, 1], lambda =
    sigmoid(logits): the tutorials' binary cross-entropy on grey pixels plus the log-normaliser
    that makes it a density on [0, 1] (see continuous_bernoulli_log_norm). A density: its nats
    become bits/dim only through dequantisation (DataConfig.dequantize)."""

    support: Support = "continuous"
    title = "continuous Bernoulli"
    params_per_channel = 1

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        cross_entropy = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return sum_pixels(continuous_bernoulli_log_norm(logits) - cross_entropy)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """E[x] = 1 / (1 - e^-l) - 1 / l, and 1/2 + l/12 - l^3/720 near l = 0."""
        small = logits.abs() < CB_SERIES_LOGIT
        safe = torch.where(small, torch.ones_like(logits), logits)
        direct = -1.0 / torch.expm1(-safe) - 1.0 / safe
        series = 0.5 + logits / 12.0 - logits.pow(3) / 720.0
        return torch.where(small, series, direct)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inverse CDF: x = log(1 + u (e^l - 1)) / l for u ~ U(0, 1), written so that neither e^l
        overflows nor precision is lost near l = 0 (there x = u + l u (1 - u) / 2 + O(l^2))."""
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        small = logits.abs() < CB_SERIES_LOGIT
        safe = torch.where(small, torch.ones_like(logits), logits)
        positive = 1.0 + torch.log(u + (1.0 - u) * torch.exp(-safe.clamp(min=0.0))) / safe  # l > 0
        negative = torch.log1p(u * torch.expm1(safe.clamp(max=0.0))) / safe  # l < 0
        direct = torch.where(safe > 0, positive, negative)
        series = u + logits * u * (1.0 - u) / 2.0
        return torch.where(small, series, direct).clamp(0.0, 1.0)


SPECS = (
    MethodSpec(
        "continuous-bernoulli",
        "the Bernoulli's cross-entropy normalised to a density of grey pixels in [0, 1]",
        "https://arxiv.org/abs/1907.06845",
        lambda settings, context: ContinuousBernoulliLikelihood(),
        needs=frozenset({"unit_grey_pixels"}),
        offers=frozenset({"density"}),
    ),
)
