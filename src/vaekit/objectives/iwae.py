"""The importance-weighted bound and its variants, each from K importance samples per item.

- IWAE (Burda et al. 2016, https://arxiv.org/abs/1509.00519): -log (1/K) sum_k w_k.
- MIWAE, PIWAE, CIWAE (Rainforth et al. 2018, "Tighter variational bounds are not necessarily
  better", https://arxiv.org/abs/1802.04537): MIWAE(M, K) averages M independent IWAE bounds of K
  samples each; CIWAE(β) is β ELBO + (1 - β) IWAE over the same K samples; PIWAE(M, K) trains the
  generative network with IWAE over all M K samples and the inference network with MIWAE(M, K).

Shapes: K samples (M K for MIWAE and PIWAE), b items. Every variant reports the ELBO's parts
from the same samples (the mean of -log p(x|z) and the KL) beside its loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vaekit.methods import MethodSpec, setting
from vaekit.objectives import iwae_bound, log_importance_weights
from vaekit.objectives.base import Objective, ObjectiveContext, ObjectiveTerms, StepBatch, TrainableModel


def miwae_bound(log_weights: torch.Tensor, groups: int) -> torch.Tensor:
    """(M K, b) log weights -> (b,): the mean over M groups of K of each group's IWAE bound."""
    grouped = log_weights.view(groups, -1, log_weights.shape[-1])  # (M, K, b)
    k = grouped.shape[1]
    return (torch.logsumexp(grouped, dim=1) - math.log(k)).mean(0)


def ciwae_bound(log_weights: torch.Tensor, beta: float) -> torch.Tensor:
    """(K, b) -> (b,): β times the K-sample ELBO (the mean log weight) plus (1 - β) times IWAE."""
    return beta * log_weights.mean(0) + (1.0 - beta) * iwae_bound(log_weights)


def _weighted_samples(
    model: TrainableModel, batch: StepBatch, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` importance samples per item: their log weights (count, b), and the ELBO's parts
    from them, -log p(x|z) and the KL, each (b,)."""
    posterior = model.encode(batch.x, batch.y)
    eps = batch.noise(model.noise_dim, samples=count)  # (count, b, Z)
    terms = model.terms(batch.x, posterior, count, eps=eps, y=batch.y)
    return terms.log_w, -terms.log_px.mean(0), terms.kl_nats()


@dataclass(frozen=True)
class Iwae:
    samples: int  # K
    terms: tuple[str, ...] = ()

    @property
    def draws(self) -> int:
        """Posterior draws per item a step takes (training/budget.py reads it)."""
        return self.samples

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        eps = batch.noise(model.noise_dim, samples=self.samples)  # (K, b, Z)
        terms = model.iwae(batch.x, self.samples, eps=eps, y=batch.y)
        return ObjectiveTerms(terms.loss, terms.recon_nats, terms.kl_nats)


@dataclass(frozen=True)
class Miwae:
    groups: int  # M
    samples: int  # K per group
    terms: tuple[str, ...] = ()

    @property
    def draws(self) -> int:
        return self.groups * self.samples

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        log_w, recon, kl = _weighted_samples(model, batch, self.groups * self.samples)  # (M K, b)
        return ObjectiveTerms(-miwae_bound(log_w, self.groups), recon, kl)


@dataclass(frozen=True)
class Ciwae:
    beta: float  # the ELBO's share
    samples: int  # K
    terms: tuple[str, ...] = ()

    @property
    def draws(self) -> int:
        return self.samples

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        log_w, recon, kl = _weighted_samples(model, batch, self.samples)  # (K, b)
        return ObjectiveTerms(-ciwae_bound(log_w, self.beta), recon, kl)


@dataclass(frozen=True)
class Piwae:
    groups: int  # M
    samples: int  # K per group
    terms: tuple[str, ...] = ()

    @property
    def draws(self) -> int:
        return self.groups * self.samples

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        """The loss's value is -IWAE(M K); its gradient is IWAE's for the generative parameters
        (decoder, likelihood, a learned prior) and MIWAE's for the encoder's.

        Two sets of log weights from the same z: `generative` sees z and q(z|x) as constants, so
        only the generative parameters move it; `mixed` has the value of the full log weights and
        the full weights' gradient minus `generative`'s, which cancels every generative
        parameter's gradient (log p(x, z) at the same z) and leaves the encoder's.
        """
        total = self.groups * self.samples
        x, y = batch.x, batch.y
        posterior = model.encode(x, y)
        eps = batch.noise(model.noise_dim, samples=total)  # (M K, b, Z)
        z = posterior.mu + posterior.std * eps  # (M K, b, Z)
        fixed = z.detach()
        log_px = model.log_likelihood(x, model.decode(fixed.flatten(0, 1), _repeat(y, total))).view(total, -1)
        generative = log_importance_weights(
            log_px, model.prior.log_prob(fixed, model.encode), posterior.log_prob(fixed).detach()
        )  # (M K, b)
        drawn = model.terms(x, posterior, total, eps=eps, y=y)
        mixed = drawn.log_w - generative + generative.detach()
        inference = miwae_bound(mixed, self.groups)
        loss = -iwae_bound(generative) - (inference - inference.detach())
        kl = drawn.kl_nats()
        return ObjectiveTerms(loss, -log_px.detach().mean(0), kl)


def _repeat(y: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """Labels (b,) -> (K b,), sample-major like the decodings."""
    return None if y is None else y.repeat(k)


@dataclass(frozen=True)
class GroupSettings:
    groups: int = setting(8, "miwae, piwae: M groups of --iwae-samples samples", flag="iwae-groups", low=1, high=10_000)


@dataclass(frozen=True)
class CiwaeSettings:
    beta: float = setting(
        0.5, "ciwae: the ELBO's share beta of beta ELBO + (1 - beta) IWAE", flag="ciwae-beta", low=0, high=1
    )


def _variant(
    name: str, summary: str, build: Callable[[Any, ObjectiveContext], Objective], settings: type
) -> MethodSpec:
    """One of Rainforth et al. (2018)'s bounds: written for one layer of a Gaussian posterior."""
    return MethodSpec(
        name,
        summary,
        "https://arxiv.org/abs/1802.04537",
        build,
        settings,
        needs=frozenset({"one_layer", "latent", "gaussian_posterior"}),
        offers=frozenset({"elbo"}),
    )


SPECS = (
    MethodSpec(
        "iwae",
        "the importance-weighted bound over --iwae-samples K draws per item",
        "https://arxiv.org/abs/1509.00519",
        lambda settings, context: Iwae(context.importance_samples),
        needs=frozenset({"sampled_posterior"}),
        offers=frozenset({"elbo"}),
    ),
    _variant(
        "miwae",
        "the mean of M IWAE bounds of K draws each",
        lambda settings, context: Miwae(settings.groups, context.importance_samples),
        GroupSettings,
    ),
    _variant(
        "piwae",
        "IWAE over M K draws for the decoder, MIWAE(M, K) for the encoder",
        lambda settings, context: Piwae(settings.groups, context.importance_samples),
        GroupSettings,
    ),
    _variant(
        "ciwae",
        "beta ELBO + (1 - beta) IWAE over the same K draws",
        lambda settings, context: Ciwae(settings.beta, context.importance_samples),
        CiwaeSettings,
    ),
)
