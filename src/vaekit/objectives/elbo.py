"""The ELBO, with the β-VAE weight, KL warm-up and free bits (Higgins et al. 2017,
https://openreview.net/forum?id=Sy2fzU9gl; free bits: Kingma et al. 2016,
https://arxiv.org/abs/1606.04934). The default objective; any model, one or two stochastic layers."""

from __future__ import annotations

from dataclasses import dataclass

from vaekit.methods import MethodSpec
from vaekit.objectives.base import ObjectiveContext, ObjectiveTerms, StepBatch, TrainableModel


@dataclass(frozen=True)
class Elbo:
    free_bits: float = 0.0  # nats per latent dimension
    terms: tuple[str, ...] = ()

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        # Free bits compare the global batch's KL per dimension with their floor, not this rank's.
        kl_batch_mean = (lambda kl_per_dim: batch.global_mean(kl_per_dim.detach())) if batch.distributed else None
        terms = model.elbo(
            batch.x,
            beta=batch.beta,
            free_bits=self.free_bits,
            eps=batch.noise(model.noise_dim),
            kl_batch_mean=kl_batch_mean,
            y=batch.y,
        )
        return ObjectiveTerms(terms.loss, terms.recon_nats, terms.kl_nats)


def _build(settings: object, context: ObjectiveContext) -> Elbo:
    return Elbo(context.free_bits)


SPECS = (
    MethodSpec(
        "elbo",
        "the ELBO, with the β-VAE weight --beta, KL warm-up and free bits",
        "https://openreview.net/forum?id=Sy2fzU9gl",
        _build,
        offers=frozenset({"elbo", "kl_schedule"}),
    ),
)
