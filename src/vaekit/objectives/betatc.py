"""β-TCVAE (Chen et al. 2018, "Isolating sources of disentanglement in variational autoencoders",
https://arxiv.org/abs/1802.04942): the KL term split, for each item's sample z ~ q(z|x), into

    index-code mutual information  MI   = log q(z|x) - log q(z)
    total correlation              TC   = log q(z) - sum_j log q(z_j)
    dimension-wise KL              DWKL = sum_j log q(z_j) - log p(z)

(they sum to the one-sample KL estimate log q(z|x) - log p(z)), weighted α, β, γ. The aggregate
posterior q(z) = (1/N) sum_n q(z|x_n) over the N training items is estimated from the global batch
of G items, by minibatch-weighted sampling (MWS: every term weighted 1/(N G), the paper's main
estimator and its code's default) or minibatch-stratified sampling (MSS, the paper's Appendix
C.2: the item's own term 1/N, one other (N - G + 1)/(N (G - 1)), the rest 1/(G - 1), an unbiased
estimate of q(z)). vaekit's default is MSS: MWS's weights sum to 1/N, so its log q(z) sits about
log N below the truth, which moves no gradient but shifts every reported MI, TC and DWKL by a
constant; MSS's figures are the model's own (tests/test_objectives_tc.py checks both against the
exact q(z) of a small set).

The loss is recon + KL + (α - 1) MI + (β - 1) TC + (γ - 1) DWKL with the closed-form KL, which has
the expectation of recon + α MI + β TC + γ DWKL and less variance (disentanglement_lib's
`BetaTCVAE` does the same for α = γ = 1). Needs the N(0, I) prior and one stochastic layer.
Shapes: b this rank's items, G the global batch, Z latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from vaekit.distributions import LOG_2PI, standard_normal_log_prob
from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveContext, ObjectiveTerms, StepBatch, TrainableModel, one_sample

Estimator = Literal["mss", "mws"]


def log_density_matrix(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z_i,j | x_m) per dimension: z (b, Z), mu and logvar (G, Z) -> (b, G, Z)."""
    z, mu, logvar = z[:, None], mu[None], logvar[None]
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + LOG_2PI)


def log_weight_matrix(own: torch.Tensor, batch: int, dataset: int, estimator: Estimator) -> torch.Tensor:
    """log of the weight of item m's density in the estimate of q(z_i), for the rows `own` (b,)
    (item i's index in the global batch of `batch` items, drawn from `dataset` items) -> (b, G)."""
    rows = own.shape[0]
    if estimator == "mws":
        return own.new_full((rows, batch), -math.log(dataset * batch), dtype=torch.float32)
    if batch < 2:
        raise ValueError("minibatch-stratified sampling needs a batch of at least 2")
    weights = torch.full((rows, batch), 1.0 / (batch - 1), device=own.device)
    index = torch.arange(rows, device=own.device)
    weights[index, (own + 1) % batch] = (dataset - batch + 1) / (dataset * (batch - 1))  # the stratum
    weights[index, own] = 1.0 / dataset
    return weights.log()


def tc_decomposition(
    z: torch.Tensor,
    mu_all: torch.Tensor,
    logvar_all: torch.Tensor,
    own: torch.Tensor,
    dataset: int,
    estimator: Estimator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MI, TC, DWKL), each (b,) in nats, for samples z (b, Z) of the items at global indices `own`
    (b,) of a global batch with posteriors mu_all, logvar_all (G, Z), under the N(0, I) prior."""
    per_dim = log_density_matrix(z, mu_all, logvar_all)  # (b, G, Z)
    log_w = log_weight_matrix(own, mu_all.shape[0], dataset, estimator)  # (b, G)
    log_q_given_x = per_dim.sum(-1)[torch.arange(z.shape[0], device=z.device), own]  # (b,) its own posterior
    log_q = torch.logsumexp(per_dim.sum(-1) + log_w, dim=1)  # (b,)
    log_q_marginals = torch.logsumexp(per_dim + log_w[..., None], dim=1).sum(-1)  # (b,)
    log_p = standard_normal_log_prob(z)  # (b,)
    return log_q_given_x - log_q, log_q - log_q_marginals, log_q_marginals - log_p


@dataclass(frozen=True)
class BetaTC:
    alpha: float
    beta: float
    gamma: float
    estimator: Estimator
    dataset_size: int  # N, the training items q(z) averages over
    terms: tuple[str, ...] = ("mi_nats", "tc_nats", "dwkl_nats")

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        mu_all, logvar_all = batch.gather(out.posterior.mu), batch.gather(out.posterior.logvar)  # (G, Z)
        own = torch.arange(batch.rows.start, batch.rows.start + out.z.shape[0], device=out.z.device)
        mi, tc, dwkl = tc_decomposition(out.z, mu_all, logvar_all, own, self.dataset_size, self.estimator)
        loss = -out.log_px + out.kl + (self.alpha - 1) * mi + (self.beta - 1) * tc + (self.gamma - 1) * dwkl
        return ObjectiveTerms(loss, -out.log_px, out.kl, {"mi_nats": mi, "tc_nats": tc, "dwkl_nats": dwkl})


@dataclass(frozen=True)
class BetaTcSettings:
    alpha: float = setting(1.0, "betatc: the weight of the index-code mutual information", flag="tc-alpha", low=0)
    beta: float = setting(6.0, "betatc: the weight of the total correlation", flag="tc-beta", low=0)
    gamma: float = setting(1.0, "betatc: the weight of the dimension-wise KL", flag="tc-gamma", low=0)
    estimator: Estimator = setting(
        "mss",
        "betatc: how q(z) is estimated from the batch: mss (stratified, unbiased) or mws (weighted)",
        flag="tc-estimator",
    )


def _build(settings: BetaTcSettings, context: ObjectiveContext) -> BetaTC:
    return BetaTC(settings.alpha, settings.beta, settings.gamma, settings.estimator, context.dataset_size)


SPECS = (
    MethodSpec(
        "betatc",
        "β-TCVAE: the KL split into mutual information, total correlation and dimension-wise KL",
        "https://arxiv.org/abs/1802.04942",
        _build,
        BetaTcSettings,
        needs=frozenset({"one_layer", "latent", "gaussian_posterior", "factorised_prior"}),
        offers=frozenset({"elbo"}),
        min_batch=2,
    ),
)
