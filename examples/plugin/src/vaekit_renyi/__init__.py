"""The variational Rényi bound (Li & Turner 2016, "Rényi Divergence Variational Inference",
https://arxiv.org/abs/1602.02311, eq. 5 with the importance-weighted estimator of their section 4)
as a vaekit objective: an example of a plug-in, one module and its test.

    L_alpha(x) = 1 / (1 - alpha) log (1/K) sum_k w_k^(1 - alpha),   w_k = p(x, z_k) / q(z_k|x)

over K draws z_k ~ q(z|x). alpha = 0 is the IWAE bound, alpha -> 1 the K-sample ELBO (the mean of
log w_k); in between it moves from one to the other, never above log p(x) for alpha in [0, 1].
Shapes: K draws, b items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveContext, ObjectiveTerms, StepBatch, TrainableModel


def renyi_bound(log_weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """(K, b) log importance weights -> (b,) the bound L_alpha."""
    if alpha == 1.0:
        return log_weights.mean(0)
    k = log_weights.shape[0]
    return (torch.logsumexp((1.0 - alpha) * log_weights, dim=0) - math.log(k)) / (1.0 - alpha)


@dataclass(frozen=True)
class RenyiSettings:
    alpha: float = setting(
        0.5, "renyi: alpha of the bound, from 0 (IWAE) to 1 (the ELBO)", flag="renyi-alpha", low=0, high=1
    )


@dataclass(frozen=True)
class Renyi:
    alpha: float
    samples: int  # K
    terms: tuple[str, ...] = ()

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        posterior = model.encode(batch.x, batch.y)
        eps = batch.noise(model.noise_dim, samples=self.samples)  # (K, b, N)
        log_w, log_px = model.log_weights(batch.x, posterior, self.samples, eps=eps, y=batch.y)  # (K, b) each
        # the ELBO's parts from the same draws, reported beside the loss as every objective does
        return ObjectiveTerms(-renyi_bound(log_w, self.alpha), -log_px.mean(0), (log_px - log_w).mean(0))


def _build(settings: RenyiSettings, context: ObjectiveContext) -> Renyi:
    return Renyi(settings.alpha, context.importance_samples)


SPECS = (
    MethodSpec(
        "renyi",
        "the variational Rényi bound over --iwae-samples draws (alpha 0: IWAE, 1: the ELBO)",
        "https://arxiv.org/abs/1602.02311",
        _build,
        RenyiSettings,
        needs=frozenset({"sampled_posterior", "one_layer"}),
        offers=frozenset({"elbo"}),
    ),
)
