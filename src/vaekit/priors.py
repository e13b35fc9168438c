"""Priors p(z): the standard normal, and a learned mixture of diagonal Gaussians.

A mixture prior lets the aggregate posterior keep its clusters instead of being pulled towards a
single N(0, I) (Tomczak & Welling 2018 motivate learned priors: https://arxiv.org/abs/1705.07120).
It has no closed-form KL with the posterior, so the ELBO uses the one-sample Monte Carlo estimate
log q(z|x) - log p(z). Shapes: Z latent, M components, (...) any leading batch dimensions.
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.distributions import LOG_2PI, standard_normal_log_prob


class StandardNormalPrior(nn.Module):
    closed_form_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)  # (..., Z) -> (...)

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        return torch.randn((n, self.latent_dim), generator=generator, device=device)


class MixturePrior(nn.Module):
    """p(z) = sum_m pi_m N(z; mu_m, diag(exp(logvar_m))) with learned pi, mu and logvar."""

    closed_form_kl = False

    def __init__(self, latent_dim: int, components: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # Spread the means so the components start apart; unit variances, equal weights.
        self.means = nn.Parameter(torch.randn((components, latent_dim), generator=generator))
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        diff = z.unsqueeze(-2) - self.means  # (..., M, Z)
        per_component = -0.5 * (diff.pow(2) * torch.exp(-self.logvars) + self.logvars + LOG_2PI).sum(-1)
        log_weights = torch.log_softmax(self.logits, dim=0)  # (M,)
        return torch.logsumexp(per_component + log_weights, dim=-1)  # (...)

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        weights = torch.softmax(self.logits.detach(), dim=0).to(device)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.means.detach()[component] + torch.exp(0.5 * self.logvars.detach()[component]) * eps


Prior = StandardNormalPrior | MixturePrior


def monte_carlo_kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """One-sample estimate of KL(q || p) per example: log q(z|x) - log p(z) at z ~ q."""
    return log_q - log_p
