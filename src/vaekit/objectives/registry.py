"""Each `--objective` name and the object that computes it: the only place the trainer's
objective is chosen (training/loop.py asks `build_objective` and nothing else)."""

from __future__ import annotations

from typing import Literal

import torch

from vaekit.config import RunConfig
from vaekit.objectives.annealed import Annealed
from vaekit.objectives.base import Objective
from vaekit.objectives.betatc import BetaTC
from vaekit.objectives.dip import Dip
from vaekit.objectives.elbo import Elbo
from vaekit.objectives.factorvae import Discriminator, FactorVae
from vaekit.objectives.iwae import Ciwae, Iwae, Miwae, Piwae
from vaekit.objectives.mmd import InfoVae, Wae
from vaekit.objectives.vq import VectorQuantised

DISCRIMINATOR_SEED_OFFSET = 7_919


def build_objective(config: RunConfig, dataset_size: int) -> Objective:
    """The objective `config.train.objective` names, with its settings; `dataset_size` is the
    number of training items (β-TCVAE's estimate of q(z) averages over them)."""
    name, settings, train = config.train.objective, config.objective, config.train
    if config.model.posterior == "vq":  # the VQ-VAE's own loss (config allows no other objective)
        return VectorQuantised(config.model.commitment)
    if name == "elbo":
        return Elbo(train.free_bits)
    if name == "iwae":
        return Iwae(train.iwae_samples)
    if name == "miwae":
        return Miwae(settings.iwae_groups, train.iwae_samples)
    if name == "piwae":
        return Piwae(settings.iwae_groups, train.iwae_samples)
    if name == "ciwae":
        return Ciwae(settings.ciwae_beta, train.iwae_samples)
    if name == "annealed":
        return Annealed(settings.capacity_gamma, settings.capacity_max, settings.capacity_steps)
    if name == "betatc":
        return BetaTC(settings.tc_alpha, settings.tc_beta, settings.tc_gamma, settings.tc_estimator, dataset_size)
    if name in ("dip-i", "dip-ii"):
        kind: Literal["i", "ii"] = "i" if name == "dip-i" else "ii"
        factor = 10.0 if kind == "i" else 1.0
        lambda_d = settings.dip_lambda_d if settings.dip_lambda_d is not None else factor * settings.dip_lambda_od
        return Dip(kind, settings.dip_lambda_od, lambda_d)
    if name == "factorvae":
        # Its own seeded stream: the same weights whatever drew from the global one before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train.seed + DISCRIMINATOR_SEED_OFFSET)
            discriminator = Discriminator(
                config.model.latent_dim, settings.discriminator_hidden, settings.discriminator_layers
            )
        return FactorVae(settings.factor_gamma, discriminator, settings.discriminator_lr)
    if name == "infovae":
        return InfoVae(settings.info_alpha, settings.info_lambda, settings.mmd_kernel, settings.mmd_scale)
    if name == "wae":
        return Wae(settings.wae_lambda, settings.mmd_kernel, settings.mmd_scale)
    raise ValueError(f"no objective {name!r}")  # config.Objective lists every name: a vaekit bug
