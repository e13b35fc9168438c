"""Priors p(z): the standard normal, a learned mixture of Gaussians, and the VampPrior.

Learned priors let the aggregate posterior keep its clusters instead of being pulled towards a
single N(0, I) (Tomczak & Welling 2018, https://arxiv.org/abs/1705.07120). They have no
closed-form KL with the posterior, so the ELBO uses the one-sample Monte Carlo estimate
log q(z|x) - log p(z). Shapes: Z latent, M components, (...) any leading batch dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.distributions import LOG_2PI, DiagonalGaussian, standard_normal_log_prob
from vaekit.errors import VaekitError
from vaekit.methods import MethodSpec, setting
from vaekit.vmf import log_sphere_area

Encode = Callable[[torch.Tensor], DiagonalGaussian]


def mixture_log_prob(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log sum_m softmax(logits)_m N(z; means_m, diag(exp(logvars_m))): (..., Z) -> (...)."""
    diff = z.unsqueeze(-2) - means  # (..., M, Z)
    per_component = -0.5 * (diff.pow(2) * torch.exp(-logvars) + logvars + LOG_2PI).sum(-1)  # (..., M)
    return torch.logsumexp(per_component + torch.log_softmax(logits, dim=0), dim=-1)


def mixture_sample(
    n: int, means: torch.Tensor, logvars: torch.Tensor, logits: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """n draws (n, Z): a component by weight, then a Gaussian draw from it."""
    component = torch.multinomial(torch.softmax(logits, dim=0), n, replacement=True, generator=generator)  # (n,)
    eps = torch.randn((n, means.shape[1]), generator=generator, device=means.device)
    return means[component] + torch.exp(0.5 * logvars[component]) * eps


def monte_carlo_kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """One-sample estimate of KL(q || p) per example: log q(z|x) - log p(z) at z ~ q."""
    return log_q - log_p


class StandardNormalPrior(nn.Module):
    closed_form_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        return standard_normal_log_prob(z)  # (..., Z) -> (...)

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device, encode: Encode) -> torch.Tensor:
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

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        return mixture_log_prob(z, self.means, self.logvars, self.logits)

    def sample(
        self, n: int, generator: torch.Generator | None, device: torch.device, encode: Encode | None = None
    ) -> torch.Tensor:
        with torch.no_grad():
            return mixture_sample(n, self.means.to(device), self.logvars.to(device), self.logits.to(device), generator)


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z | u_k): the encoder's posteriors at K learned pseudo-inputs u_k.

    The prior holds only the pseudo-inputs; the VAE passes its encoder in, so no weights are
    stored twice (and the checkpoint has no shared tensors)."""

    closed_form_kl = False

    def __init__(self, image_shape: tuple[int, int, int], components: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # Around mid-grey, so the first pseudo-inputs are plausible (if blurry) images.
        self.pseudo_inputs = nn.Parameter(0.5 + 0.1 * torch.randn((components, *image_shape), generator=generator))

    def _mixture(self, encode: Encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        posterior = encode(self.pseudo_inputs)  # (K, Z) each, differentiable in the pseudo-inputs
        return posterior.mu, posterior.logvar, torch.zeros(len(self.pseudo_inputs), device=posterior.mu.device)

    def log_prob(self, z: torch.Tensor, encode: Encode) -> torch.Tensor:
        return mixture_log_prob(z, *self._mixture(encode))

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device, encode: Encode) -> torch.Tensor:
        with torch.no_grad():
            return mixture_sample(n, *self._mixture(encode), generator)


class UniformSpherePrior(nn.Module):
    """p(z) uniform on the unit sphere S^(Z-1): the prior of the hyperspherical VAE (--posterior vmf)."""

    closed_form_kl = False  # the vMF posterior's KL to it is closed form, but not per dimension

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor, encode: Encode | None = None) -> torch.Tensor:
        return z.new_full(z.shape[:-1], -log_sphere_area(self.latent_dim))  # (..., Z) -> (...)

    def sample(
        self, n: int, generator: torch.Generator | None, device: torch.device, encode: Encode | None = None
    ) -> torch.Tensor:
        g = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return g / g.norm(dim=-1, keepdim=True)  # a Gaussian's direction is uniform on the sphere


Prior = StandardNormalPrior | MixturePrior | VampPrior | UniformSpherePrior


@dataclass(frozen=True)
class PriorContext:
    """What building a prior may read beyond its own settings (methods.MethodSpec.build)."""

    latent_dim: int  # Z
    image_shape: tuple[int, int, int]  # (C, H, W): the VampPrior's pseudo-inputs are images


@dataclass(frozen=True)
class ComponentSettings:
    components: int = setting(
        10,
        "mixture, vamp: components of the mixture prior, or pseudo-inputs of the VampPrior",
        flag="prior-components",
        low=1,
        high=100_000,
    )


def _not_conditional(settings: object, config: Any) -> None:
    if config.model.conditional:
        raise VaekitError(
            "--conditional with --prior vamp is not supported: the VampPrior's pseudo-inputs carry no label; use "
            "--prior standard or mixture"
        )


_LEARNED = "https://arxiv.org/abs/1705.07120"
SPECS = (
    MethodSpec(
        "standard",
        "N(0, I): the KL in closed form, per dimension",
        "https://arxiv.org/abs/1312.6114",
        lambda settings, context: StandardNormalPrior(context.latent_dim),
        offers=frozenset({"factorised_prior"}),
    ),
    MethodSpec(
        "mixture",
        "a learned mixture of --prior-components Gaussians (KL by sampling)",
        _LEARNED,
        lambda settings, context: MixturePrior(context.latent_dim, settings.components),
        ComponentSettings,
        needs=frozenset({"latent", "one_layer"}),
    ),
    MethodSpec(
        "vamp",
        "VampPrior: the encoder's posteriors at --prior-components learned pseudo-inputs (KL by sampling)",
        _LEARNED,
        lambda settings, context: VampPrior(context.image_shape, settings.components),
        ComponentSettings,
        needs=frozenset({"latent", "one_layer", "gaussian_posterior"}),
        check=_not_conditional,
    ),
)
