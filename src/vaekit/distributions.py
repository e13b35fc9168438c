"""The diagonal Gaussian posterior q(z|x), its KL, and the standard normal density.

Shape letters: B batch, Z latent. Every log-probability is returned per example, shape (B,), in
nats; the caller reduces. The likelihoods p(x|z) are in vaekit/likelihoods/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2.0 * math.pi)
LOGVAR_BOUND = 30.0


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
