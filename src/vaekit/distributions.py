"""The approximate posterior and the likelihoods p(x|z).

Shape letters: B batch, Z latent, C channels, H, W image; D = C*H*W pixels.
Every log-probability is returned per example, shape (B,), in nats; the caller reduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.errors import VaekitError

LOG_2PI = math.log(2.0 * math.pi)
LOGVAR_BOUND = 30.0
# A learned Gaussian likelihood's variance is kept above (1e-3)^2: narrower than an 8-bit pixel's
# bin (width 1/256 on [0, 1], std of a uniform in it 0.0011) a density only grows on gridded data.
MIN_LOGVAR = 2.0 * math.log(1e-3)


@dataclass(frozen=True)
class PosteriorDraw:
    """z ~ q(z|x), (..., B, Z), with log q(z|x) (..., B) and, for a sampler whose reparameterised
    gradient alone is biased (the vMF's rejection sampler), the log-ratio whose score corrects it
    (vmf.with_correction); None where the reparameterised gradient is exact."""

    z: torch.Tensor
    log_q: torch.Tensor
    correction: torch.Tensor | None = None

    def corrected(self, value: torch.Tensor) -> torch.Tensor:
        """`value` (..., B), a function of z averaged over draws, with the sampler's correction
        added to its gradient (its forward value unchanged)."""
        if self.correction is None:
            return value
        return value + value.detach() * (self.correction - self.correction.detach())


class DiagonalGaussian:
    """q(z|x) = N(mu, diag(exp(logvar))) with mu and logvar of shape (B, Z)."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mu = mu
        self.logvar = logvar

    @classmethod
    def from_params(cls, params: torch.Tensor) -> DiagonalGaussian:
        mu, logvar = params.chunk(2, dim=-1)  # (B, 2Z) -> 2 x (B, Z)
        # exp(-logvar) appears in every density and KL: beyond ±30 (std 3e-7 .. 3e6, far outside
        # anything a trained network uses) one wild output would overflow to inf and NaN the step.
        return cls(mu, logvar.clamp(-LOGVAR_BOUND, LOGVAR_BOUND))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised sample z = mu + sigma * eps, differentiable in mu and logvar; eps (B, Z)
        standard normal noise, drawn from `generator` unless given."""
        if eps is None:
            eps = torch.randn(self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype)
        return self.mu + self.std * eps

    def rsample_and_log_prob(
        self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> PosteriorDraw:
        """z = mu + sigma * eps with log q(z|x); eps (..., B, Z) may carry leading sample dimensions."""
        z = self.rsample(generator, eps)
        return PosteriorDraw(z, self.log_prob(z))

    def mode(self) -> torch.Tensor:
        return self.mu

    def summary(self) -> dict[str, torch.Tensor]:
        """What `vaekit encode` writes per item, (B, Z) each: the mean and the standard deviation."""
        return {"mean": self.mu, "std": self.std}

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over Z; z (..., B, Z) -> (..., B)."""
        return -0.5 * ((z - self.mu) ** 2 * torch.exp(-self.logvar) + self.logvar + LOG_2PI).sum(-1)

    def kl_per_dim(self) -> torch.Tensor:
        """KL(q || N(0, I)) per latent dimension in closed form, shape (B, Z)."""
        return kl_standard_normal(self.mu, self.logvar)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """-0.5 * (1 + logvar - mu^2 - exp(logvar)), elementwise; sum over Z for the full KL."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())


def kl_gaussians(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """KL(q || p) between diagonal Gaussians, elementwise (sum over Z for the full KL):
    0.5 * (logvar_p - logvar_q + (var_q + (mu_q - mu_p)^2) / var_p - 1)."""
    return 0.5 * (p.logvar - q.logvar + (q.logvar.exp() + (q.mu - p.mu).pow(2)) * torch.exp(-p.logvar) - 1.0)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def _sum_pixels(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(start_dim=1).sum(dim=1)  # (B, C, H, W) -> (B,)


Support = Literal["binary", "levels", "continuous"]


class Likelihood(Protocol):
    """What the VAE, the metrics and the decoders need to know about p(x|z).

    `decoded` is the decoder's output, (B, P, H, W) with P = C * params_per_channel.
    """

    # What x may be: "binary" (0 or 1: a probability mass only on binary data), "levels" (a mass
    # over the 256 levels of 8-bit pixels), or "continuous" (a density, a probability only once
    # the pixels are dequantised). metrics/figures.py turns this into what a figure may be called.
    support: Support
    title: str  # its name in reports: "Bernoulli", "Gaussian", ...
    params_per_channel: int  # decoder outputs per image channel

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, (B, C, H, W) -> (B,), in nats."""
        ...

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in model scale, (B, C, H, W)."""
        ...

    def sample(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw x ~ p(x|z) in model scale, (B, C, H, W)."""
        ...


def bernoulli_entropy(x: torch.Tensor) -> torch.Tensor:
    """H(x) = -sum_i [x_i log x_i + (1 - x_i) log(1 - x_i)] in nats per image, (B, C, H, W) -> (B,):
    the least cross-entropy a Bernoulli can give pixels x in [0, 1] (its logits at logit(x)). Zero
    for binary pixels; for grey ones it is the part of the cross-entropy no model can remove."""
    return -_sum_pixels(torch.special.xlogy(x, x) + torch.special.xlogy(1.0 - x, 1.0 - x))


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); the decoder outputs logits."""

    support: Support = "binary"
    title = "Bernoulli"
    params_per_channel = 1

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # The stable fused form: never takes log(sigmoid(.)) of a saturated probability.
        return -_sum_pixels(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)


class GaussianLikelihood(nn.Module):
    """p(x|z) = N(x; decoder mean, sigma^2) with sigma fixed, one learned, or learned per pixel."""

    support: Support = "continuous"
    title = "Gaussian"
    params_per_channel = 1

    def __init__(self, variance: str, sigma: float, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.variance = variance
        init = torch.full((), 2.0 * math.log(sigma))
        if variance == "fixed":
            self.register_buffer("logvar", init)
        elif variance == "global":
            self.logvar = nn.Parameter(init)
        elif variance == "pixel":
            self.logvar = nn.Parameter(init.expand(image_shape).clone())  # (C, H, W)
        else:
            raise VaekitError(f"unknown gaussian variance {variance!r}: use fixed, global or pixel")

    @property
    def effective_logvar(self) -> torch.Tensor:
        """The log-variance in use: a learned one through a smooth floor at MIN_LOGVAR (the
        identity well above it, and never a dead gradient below it); a fixed one as given."""
        if self.variance == "fixed":
            return self.logvar
        return MIN_LOGVAR + F.softplus(self.logvar - MIN_LOGVAR)

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        logvar = self.effective_logvar
        return -0.5 * _sum_pixels((x - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * self.effective_logvar) * noise


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
        return _sum_pixels(continuous_bernoulli_log_norm(logits) - cross_entropy)

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
        return _sum_pixels(self.log_prob_per_pixel(x, mean))

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
        return _sum_pixels(self.log_prob_per_pixel(x, decoded))

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
