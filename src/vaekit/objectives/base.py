"""The seam every training objective plugs into: what one step hands it (`StepBatch`), what it
returns (`ObjectiveTerms`), and the model it may ask (`TrainableModel`).

An objective is a callable `objective(model, batch) -> ObjectiveTerms` with a tuple `terms` of
the names of the extra per-item figures it reports (units in the names: `tc_nats`, or none for
the unitless `mmd`). It never learns about processes: `StepBatch` draws the noise of the whole
global batch and keeps this rank's rows, gathers a tensor over the global batch with its
gradient, and averages over it, so an objective written for one process computes the same steps
on N. Shapes: b this rank's rows of the global batch of G items, Z latent, K samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from vaekit.distributions import DiagonalGaussian
from vaekit.objectives import BatchMean, ElboTerms, ModelTerms
from vaekit.priors import Prior


@dataclass(frozen=True)
class ObjectiveTerms:
    """Per-item terms, each (b,): the loss to minimise, the ELBO's reconstruction term and its KL
    in nats (reported beside any objective, so that runs compare), and the objective's own
    figures by name (`extras`)."""

    loss: torch.Tensor
    recon_nats: torch.Tensor
    kl_nats: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    # the per-item loss of the objective's own parameters (a discriminator's), minimised by its
    # own optimiser in the same backward pass; never part of the reported loss
    auxiliary: torch.Tensor | None = None
    # a state update that is not a gradient (a codebook's moving averages and restarts): the
    # trainer calls it after the optimiser step it belongs to, never for a skipped step or in
    # evaluation, so a forward pass changes nothing by itself
    after_step: Callable[[], object] | None = None


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass(frozen=True)
class StepBatch:
    """One optimiser step's data on this rank: x (b, C, H, W) and labels y (b,) or None, the rows
    of the global batch they are, and the shared noise stream."""

    x: torch.Tensor
    y: torch.Tensor | None
    step: int  # optimiser steps taken before this one
    beta: float  # the KL weight at this step (warm-up included)
    rows: slice  # this rank's rows of the global batch
    global_count: int  # G
    generator: torch.Generator  # the same stream on every rank
    # (b, ...) -> (G, ...), every rank's rows in order, gradients flowing back to their rank
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity
    distributed: bool = False
    # a tensor summed over every rank (no gradient): statistics of the whole global batch
    total: Callable[[torch.Tensor], torch.Tensor] = _identity

    def noise(self, *shape: int, samples: int | None = None) -> torch.Tensor:
        """Standard normal noise for this rank's rows: (b, *shape), or (K, b, *shape) with `samples`.
        Drawn for the whole global batch from the shared stream, so every rank stays in step."""
        device = self.x.device
        if samples is None:
            return torch.randn((self.global_count, *shape), generator=self.generator, device=device)[self.rows]
        return torch.randn((samples, self.global_count, *shape), generator=self.generator, device=device)[:, self.rows]

    def global_mean(self, values: torch.Tensor) -> torch.Tensor:
        """(b, ...) -> (...): the mean over the global batch (over every rank's rows)."""
        return self.gather(values).mean(0)


class TrainableModel(Protocol):
    """What objectives ask of a VAE (models/vae.py and models/ladder.py keep this contract)."""

    latent_dim: int
    noise_dim: int  # standard normal numbers one posterior sample takes
    prior: Prior

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian: ...

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor: ...

    def terms(
        self,
        x: torch.Tensor,
        posterior: Any,
        samples: int | None = None,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ModelTerms:
        """The one declaration a model makes (models/vae.py; a ladder or a VQ-VAE overrides it):
        log p(x|z), log p(z), log q(z|x) and the KL at one draw per item or K; elbo, iwae and
        log_weights below are composed from it (objectives.elbo_of, iwae_of)."""
        ...

    def elbo(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        kl_batch_mean: BatchMean | None = None,
        y: torch.Tensor | None = None,
    ) -> ElboTerms: ...

    def iwae(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ElboTerms: ...

    def log_weights(
        self,
        x: torch.Tensor,
        posterior: DiagonalGaussian,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Objective(Protocol):
    @property
    def terms(self) -> tuple[str, ...]:
        """The names of ObjectiveTerms.extras, in order."""
        ...

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms: ...


@dataclass(frozen=True)
class ObjectiveContext:
    """What building an objective may read beyond its own settings (methods.MethodSpec.build)."""

    dataset_size: int  # N training items (β-TCVAE's estimate of q(z) averages over them)
    latent_dim: int  # Z
    seed: int  # the run's seed, for an objective's own parameters
    free_bits: float = 0.0  # nats per latent dimension ([train] free_bits)
    importance_samples: int = 5  # K ([train] iwae_samples)


def own_parts(objective: Objective) -> tuple[torch.nn.Module, torch.optim.Optimizer] | None:
    """An objective that trains parameters of its own (FactorVAE's discriminator) has a `module`
    and an `optimizer`: the trainer moves, steps, synchronises and checkpoints them."""
    module, optimizer = getattr(objective, "module", None), getattr(objective, "optimizer", None)
    return None if module is None or optimizer is None else (module, optimizer)


@dataclass(frozen=True)
class OneSample:
    """A single-layer model's forward pass with one reparameterised sample: q(z|x), z (b, Z),
    log p(x|z) (b,) and the KL (b,), closed form when the prior has one (then also per
    dimension, (b, Z)), else the one-sample estimate log q(z|x) - log p(z)."""

    posterior: DiagonalGaussian
    z: torch.Tensor
    log_px: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor | None


def one_sample(model: TrainableModel, batch: StepBatch) -> OneSample:
    posterior = model.encode(batch.x, batch.y)
    terms = model.terms(batch.x, posterior, eps=batch.noise(model.noise_dim), y=batch.y)  # z (b, Z)
    return OneSample(posterior, terms.z, terms.log_px, terms.kl_nats(), terms.kl_per_dim)


def per_item(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A batch-level scalar as a per-item term (b,): its mean over the global batch is the value."""
    return value.expand(like.shape[0])
