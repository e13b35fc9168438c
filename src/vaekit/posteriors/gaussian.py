"""The diagonal Gaussian posterior q(z|x) = N(mu, diag(sigma^2)) (Kingma & Welling 2014): the
encoder gives mu and log sigma^2, a draw is mu + sigma * eps, and against N(0, I) the KL is a
closed form per dimension."""

from __future__ import annotations

import torch

from vaekit.distributions import DiagonalGaussian
from vaekit.methods import MethodSpec
from vaekit.posteriors.base import PosteriorFamily


class GaussianFamily(PosteriorFamily):
    name = "gaussian"
    kl_per_dimension = True

    @property
    def encoder_outputs(self) -> int:
        return 2 * self.latent_dim  # [mu, logvar]

    @property
    def noise_dim(self) -> int:
        return self.latent_dim

    def forward(self, params: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(params)  # (B, 2Z) -> (B, Z) x 2


SPECS = (
    MethodSpec(
        "gaussian",
        "diagonal Gaussian: mu + sigma eps, its KL in closed form per dimension",
        "https://arxiv.org/abs/1312.6114",
        lambda settings, context: GaussianFamily(context.latent_dim),
        offers=frozenset({"gaussian_posterior", "sampled_posterior", "point_code", "ladder_top", "per_dimension_kl"}),
    ),
)
