"""FactorVAE (Kim & Mnih 2018, "Disentangling by factorising", https://arxiv.org/abs/1802.05983):

    loss = recon + KL + γ TC,    TC ≈ E_q(z)[log D(z) - log (1 - D(z))],

the total correlation of q(z) estimated by the density-ratio trick: a discriminator D learns to
tell samples of q(z) from samples of the product of its marginals, made by permuting each latent
dimension across the batch. D has its own parameters and its own Adam, and is trained on the
same step by the cross-entropy 0.5 E[-log D(z)] + 0.5 E[-log (1 - D(z_permuted))], as in
disentanglement_lib's `FactorVAE` (methods/unsupervised/vae.py): two logits, the same batch for
both sides. D's parameters are constants in the VAE's loss (so γ TC moves only the encoder) and
z is a constant in D's (so D's loss moves only D). The permutation is drawn over the global batch
from the shared stream, so N processes train what one does. Shapes: b this rank's items, G the
global batch, Z latent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveContext, ObjectiveTerms, StepBatch, TrainableModel, one_sample


class Discriminator(nn.Module):
    """z (B, Z) -> (B, 2) logits: [from q(z), from the product of its marginals]."""

    def __init__(self, latent_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def permute_dims(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each latent dimension permuted across the batch on its own: a sample of prod_j q(z_j).
    (G, Z) -> (G, Z)."""
    count = z.shape[0]
    columns = [z[torch.randperm(count, generator=generator, device=generator.device), j] for j in range(z.shape[1])]
    return torch.stack(columns, dim=1)


@dataclass(eq=False)
class FactorVae:
    gamma: float
    module: Discriminator  # the objective's own parameters (checkpointed and resumed with the run)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    terms: tuple[str, ...] = ("tc_nats", "discriminator_nats")
    optimizer: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr, betas=self.betas)

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        frozen = {name: p.detach() for name, p in self.module.named_parameters()}
        logits = functional_call(self.module, frozen, (out.z,))  # (b, 2), D held fixed
        tc = logits[:, 0] - logits[:, 1]  # log D/(1 - D) per item
        loss = -out.log_px + out.kl + self.gamma * tc
        fixed = out.z.detach()
        permuted = permute_dims(batch.gather(fixed), batch.generator)[batch.rows]  # (b, Z)
        real, fake = self.module(fixed), self.module(permuted)  # (b, 2) each
        discriminator = 0.5 * (
            F.cross_entropy(real, torch.zeros(len(real), dtype=torch.long, device=real.device), reduction="none")
            + F.cross_entropy(fake, torch.ones(len(fake), dtype=torch.long, device=fake.device), reduction="none")
        )  # (b,) nats
        extras = {"tc_nats": tc.detach(), "discriminator_nats": discriminator.detach()}
        return ObjectiveTerms(loss, -out.log_px, out.kl, extras, auxiliary=discriminator)


# The discriminator's initial weights come from a stream of their own, so they are the same
# whatever drew from the global one before.
DISCRIMINATOR_SEED_OFFSET = 7_919


@dataclass(frozen=True)
class FactorVaeSettings:
    gamma: float = setting(40.0, "factorvae: the weight gamma of the total correlation", flag="factor-gamma", low=0)
    discriminator_lr: float = setting(1e-4, "factorvae: the discriminator's Adam learning rate", above=0, high=10)
    discriminator_hidden: int = setting(1000, "factorvae: the discriminator's layer width", low=1, high=65_536)
    discriminator_layers: int = setting(6, "factorvae: the discriminator's hidden layers", low=1, high=64)


def _build(settings: FactorVaeSettings, context: ObjectiveContext) -> FactorVae:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(context.seed + DISCRIMINATOR_SEED_OFFSET)
        discriminator = Discriminator(context.latent_dim, settings.discriminator_hidden, settings.discriminator_layers)
    return FactorVae(settings.gamma, discriminator, settings.discriminator_lr)


SPECS = (
    MethodSpec(
        "factorvae",
        "FactorVAE: the ELBO plus gamma times a discriminator's estimate of the total correlation",
        "https://arxiv.org/abs/1802.05983",
        _build,
        FactorVaeSettings,
        needs=frozenset({"one_layer", "latent", "gaussian_posterior"}),
        offers=frozenset({"elbo", "own_parameters"}),
        min_batch=2,
    ),
)
