"""DIP-VAE (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
unlabeled observations", https://arxiv.org/abs/1711.00848): the ELBO plus a penalty that pushes a
covariance towards the identity,

    λ_od sum_{i != j} Cov_ij^2 + λ_d sum_i (Cov_ii - 1)^2,

on Cov[μ(x)] (DIP-VAE-I) or on the aggregate posterior's Cov[z] = Cov[μ(x)] + E[diag σ²(x)]
(DIP-VAE-II), both over the global batch, as disentanglement_lib's `DIPVAE` computes them (the
batch covariance with 1/G, methods/unsupervised/vae.py). The default λ_d is 10 λ_od for I and
λ_od for II (disentanglement_lib's configurations for Locatello et al. 2019). Needs the N(0, I)
prior and one stochastic layer. Shapes: b this rank's items, G the global batch, Z latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveTerms, StepBatch, TrainableModel, one_sample, per_item


def batch_covariance(values: torch.Tensor) -> torch.Tensor:
    """(G, Z) -> (Z, Z): E[v v^T] - E[v] E[v]^T over the rows (the 1/G covariance)."""
    centred = values - values.mean(0, keepdim=True)
    return centred.T @ centred / values.shape[0]


def dip_penalty(covariance: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """(Z, Z) -> (): the off-diagonal entries pushed to 0, the diagonal to 1."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


@dataclass(frozen=True)
class Dip:
    kind: Literal["i", "ii"]
    lambda_od: float
    lambda_d: float
    terms: tuple[str, ...] = ("dip_penalty",)

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        mu_all = batch.gather(out.posterior.mu)  # (G, Z)
        covariance = batch_covariance(mu_all)
        if self.kind == "ii":
            covariance = covariance + torch.diag(batch.gather(out.posterior.logvar.exp()).mean(0))
        penalty = per_item(dip_penalty(covariance, self.lambda_od, self.lambda_d), out.kl)
        loss = -out.log_px + out.kl + penalty
        return ObjectiveTerms(loss, -out.log_px, out.kl, {"dip_penalty": penalty})


@dataclass(frozen=True)
class DipSettings:
    lambda_od: float = setting(
        10.0, "dip-i, dip-ii: the weight of the off-diagonal penalty", flag="dip-lambda-od", low=0
    )
    lambda_d: float | None = setting(
        None,
        "dip-i, dip-ii: the weight of the diagonal penalty (default 10x or 1x lambda_od)",
        flag="dip-lambda-d",
        low=0,
    )


def _builder(kind: Literal["i", "ii"]) -> Callable[[DipSettings, object], Dip]:
    factor = 10.0 if kind == "i" else 1.0  # the paper's defaults: lambda_d = 10 lambda_od (I), = lambda_od (II)

    def build(settings: DipSettings, context: object) -> Dip:
        lambda_d = settings.lambda_d if settings.lambda_d is not None else factor * settings.lambda_od
        return Dip(kind, settings.lambda_od, lambda_d)

    return build


def _spec(kind: Literal["i", "ii"], summary: str) -> MethodSpec:
    return MethodSpec(
        f"dip-{kind}",
        summary,
        "https://arxiv.org/abs/1711.00848",
        _builder(kind),
        DipSettings,
        needs=frozenset({"one_layer", "latent", "gaussian_posterior", "factorised_prior"}),
        offers=frozenset({"elbo"}),
        min_batch=2,
    )


SPECS = (
    _spec("i", "DIP-VAE I: the covariance of the posterior means pushed to the identity"),
    _spec("ii", "DIP-VAE II: the covariance of the aggregate posterior pushed to the identity"),
)
