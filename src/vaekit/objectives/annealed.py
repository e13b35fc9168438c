"""AnnealedVAE, controlled capacity increase (Burgess et al. 2018, "Understanding disentangling in
β-VAE", https://arxiv.org/abs/1804.03599): loss = recon + γ |KL - C(t)|, the capacity C rising
linearly from 0 to C_max nats over the first `steps` optimiser steps, as in disentanglement_lib's
`AnnealedVAE` (methods/unsupervised/vae.py), where KL is the batch's mean KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveTerms, StepBatch, TrainableModel, one_sample, per_item


def capacity_at(step: int, capacity_max: float, steps: int) -> float:
    """C(t) in nats: linear from 0 at step 0 to `capacity_max` at `steps`, then flat."""
    return capacity_max * min(1.0, step / steps)


@dataclass(frozen=True)
class Annealed:
    gamma: float
    capacity_max: float  # nats
    steps: int
    terms: tuple[str, ...] = ("capacity_nats",)

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        capacity = capacity_at(batch.step, self.capacity_max, self.steps)
        # gamma |mean KL - C| as a per-item loss: its global-batch mean is exactly that value, and
        # its gradient is gamma sign(mean KL - C) times the gradient of the mean KL.
        sign = torch.sign(batch.global_mean(out.kl.detach()) - capacity)
        loss = -out.log_px + self.gamma * sign * (out.kl - capacity)
        return ObjectiveTerms(
            loss, -out.log_px, out.kl, {"capacity_nats": per_item(out.kl.new_tensor(capacity), out.kl)}
        )


@dataclass(frozen=True)
class AnnealedSettings:
    capacity_max: float = setting(25.0, "annealed: the capacity C_max in nats", low=0)
    capacity_steps: int = setting(100_000, "annealed: optimiser steps over which C rises to C_max", low=1, high=10**12)
    capacity_gamma: float = setting(1000.0, "annealed: the weight gamma of |KL - C|", low=0)


SPECS = (
    MethodSpec(
        "annealed",
        "controlled capacity: gamma |KL - C| with C rising to C_max",
        "https://arxiv.org/abs/1804.03599",
        lambda s, context: Annealed(s.capacity_gamma, s.capacity_max, s.capacity_steps),
        AnnealedSettings,
        needs=frozenset({"one_layer", "latent", "gaussian_posterior"}),
        offers=frozenset({"elbo"}),
    ),
)
