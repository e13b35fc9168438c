"""The trainer's objective, built from the run's specs: the only place it is chosen
(training/loop.py and metrics/evaluation.py ask `build_objective` and nothing else). Which
objectives exist is the business of vaekit/methods.py, which finds their modules and plug-ins."""

from __future__ import annotations

from vaekit.config import RunConfig
from vaekit.objectives.base import Objective, ObjectiveContext


def build_objective(config: RunConfig, dataset_size: int) -> Objective:
    """The objective the config names, with its settings; `dataset_size` is the number of
    training items (β-TCVAE's estimate of q(z) averages over them). A posterior family with a
    loss of its own (the VQ-VAE's) trains with it instead (config allows no other objective)."""
    family = config.posterior
    own_loss = family.spec.hook("objective")
    if own_loss is not None:
        return own_loss(family.settings)
    context = ObjectiveContext(
        dataset_size=dataset_size,
        latent_dim=config.model.latent_dim,
        seed=config.train.seed,
        free_bits=config.train.free_bits,
        importance_samples=config.train.iwae_samples,
    )
    return config.objective.spec.build(config.objective.settings, context)
