"""Sticking the landing (Roeder, Wu & Duvenaud 2017, "Sticking the Landing: Simple,
Lower-Variance Gradient Estimators for Variational Inference", https://arxiv.org/abs/1703.09194):
the one-draw ELBO estimate log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma eps, with log q
evaluated at parameters held fixed (no gradient through them). Its value is the ELBO estimate's;
its gradient drops the score term d/dphi log q_phi(z) at fixed z, whose expectation under q is zero,
so the estimate stays unbiased and its variance vanishes as q approaches the true posterior.

Needs the diagonal Gaussian's parameters (to hold them fixed) and one stochastic layer; any
prior. Reports the ELBO's parts as every objective does (the KL in closed form where the prior
has one). Shapes: b items, Z latent.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.distributions import DiagonalGaussian
from vaekit.methods import MethodSpec
from vaekit.objectives.base import ObjectiveTerms, StepBatch, TrainableModel, one_sample


@dataclass(frozen=True)
class StickingTheLanding:
    terms: tuple[str, ...] = ()

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        fixed = DiagonalGaussian(out.posterior.mu.detach(), out.posterior.logvar.detach())
        log_pz = model.prior.log_prob(out.z, model.encode)  # (b,)
        loss = -out.log_px - log_pz + fixed.log_prob(out.z)  # (b,): -(log p(x, z) - log q(z|x))
        return ObjectiveTerms(loss, -out.log_px, out.kl)


SPECS = (
    MethodSpec(
        "stl",
        "the one-draw ELBO with sticking-the-landing gradients (log q at fixed parameters): lower variance",
        "https://arxiv.org/abs/1703.09194",
        lambda settings, context: StickingTheLanding(),
        needs=frozenset({"one_layer", "latent", "gaussian_posterior"}),
        offers=frozenset({"elbo"}),
    ),
)
