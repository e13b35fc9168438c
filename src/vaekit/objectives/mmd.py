"""InfoVAE with the maximum mean discrepancy (Zhao et al. 2017, "InfoVAE: balancing learning and
inference in variational autoencoders", https://arxiv.org/abs/1706.02262):

    loss = recon + (1 - α) KL(q(z|x) || p(z)) + (α + λ - 1) MMD(q(z), p(z)),

the MMD between the global batch's posterior samples and as many draws from the model's own prior,
estimated without bias (the U-statistic, each sum without its diagonal), with an RBF kernel
exp(-|a - b|^2 / C) or the inverse multiquadratic kernel C / (C + |a - b|^2) of Tolstikhin et al.
2018 (WAE, https://arxiv.org/abs/1711.01558), C = 2 Z s^2 for a prior of scale s per dimension.
The MMD is unitless. Shapes: b this rank's items, G the global batch, Z latent.

The Wasserstein autoencoder with the MMD penalty (WAE-MMD, Tolstikhin et al. 2018, Algorithm 2)
drops the KL and the noise: its encoder is deterministic, z = μ(x), and

    loss = -log p(x | μ(x)) + λ MMD(q(z), p(z)),

the reconstruction cost taken as the likelihood's negative log (a squared error for a Gaussian).
A point-mass posterior has no ELBO (its KL to p(z) is infinite), so a WAE run reports its
reconstruction cost and the MMD, never a likelihood figure (metrics/meaning.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vaekit.methods import MethodSpec, setting
from vaekit.objectives.base import ObjectiveTerms, StepBatch, TrainableModel, one_sample, per_item

Kernel = Literal["imq", "rbf"]


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: Kernel, scale: float) -> torch.Tensor:
    """(n, Z), (m, Z) -> (n, m) kernel values."""
    c = 2.0 * a.shape[-1] * scale**2
    distances = torch.cdist(a, b).pow(2)  # (n, m)
    return c / (c + distances) if kernel == "imq" else torch.exp(-distances / c)


def mmd(samples: torch.Tensor, reference: torch.Tensor, kernel: Kernel, scale: float = 1.0) -> torch.Tensor:
    """The unbiased estimate of MMD^2 between two sets of n >= 2 points, (n, Z) x 2 -> ()."""
    n = samples.shape[0]
    off_diagonal = 1.0 - torch.eye(n, device=samples.device)
    within_samples = (kernel_matrix(samples, samples, kernel, scale) * off_diagonal).sum() / (n * (n - 1))
    within_reference = (kernel_matrix(reference, reference, kernel, scale) * off_diagonal).sum() / (n * (n - 1))
    between = kernel_matrix(samples, reference, kernel, scale).mean()
    return within_samples + within_reference - 2.0 * between


@dataclass(frozen=True)
class InfoVae:
    alpha: float
    lam: float  # λ
    kernel: Kernel
    scale: float
    terms: tuple[str, ...] = ("mmd",)

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        out = one_sample(model, batch)
        z_all = batch.gather(out.z)  # (G, Z)
        # The same draws on every rank: each takes G from the shared stream.
        reference = model.prior.sample(batch.global_count, batch.generator, z_all.device, model.encode)  # (G, Z)
        distance = per_item(mmd(z_all, reference, self.kernel, self.scale), out.kl)
        loss = -out.log_px + (1 - self.alpha) * out.kl + (self.alpha + self.lam - 1) * distance
        return ObjectiveTerms(loss, -out.log_px, out.kl, {"mmd": distance})


@dataclass(frozen=True)
class Wae:
    lam: float  # λ
    kernel: Kernel
    scale: float
    terms: tuple[str, ...] = ("mmd",)

    def __call__(self, model: TrainableModel, batch: StepBatch) -> ObjectiveTerms:
        z = model.encode(batch.x, batch.y).mode()  # (b, Z): the deterministic code μ(x)
        recon = -model.log_likelihood(batch.x, model.decode(z, batch.y))  # (b,)
        z_all = batch.gather(z)  # (G, Z)
        reference = model.prior.sample(batch.global_count, batch.generator, z_all.device, model.encode)  # (G, Z)
        distance = per_item(mmd(z_all, reference, self.kernel, self.scale), recon)
        # No KL: reported as 0 so that the loss's parts still add up (recon + λ MMD).
        return ObjectiveTerms(recon + self.lam * distance, recon, torch.zeros_like(recon), {"mmd": distance})


_KERNEL_HELP = "infovae, wae: imq (inverse multiquadratic) or rbf"
_SCALE_HELP = "infovae, wae: the kernel's scale s per dimension, C = 2 Z s^2"


@dataclass(frozen=True)
class InfoVaeSettings:
    alpha: float = setting(0.0, "infovae: alpha; the KL's weight is 1 - alpha", flag="info-alpha", high=1)
    lam: float = setting(1000.0, "infovae: lambda; the MMD's weight is alpha + lambda - 1", flag="info-lambda", low=0)
    kernel: Kernel = setting("imq", _KERNEL_HELP, flag="mmd-kernel")
    scale: float = setting(1.0, _SCALE_HELP, flag="mmd-scale", above=0)


@dataclass(frozen=True)
class WaeSettings:
    lam: float = setting(10.0, "wae: lambda, the MMD's weight beside the reconstruction", flag="wae-lambda", low=0)
    kernel: Kernel = setting("imq", _KERNEL_HELP, flag="mmd-kernel")
    scale: float = setting(1.0, _SCALE_HELP, flag="mmd-scale", above=0)


_NEEDS = frozenset({"one_layer", "latent", "gaussian_posterior"})
SPECS = (
    MethodSpec(
        "infovae",
        "InfoVAE: (1 - alpha) KL + (alpha + lambda - 1) MMD(q(z), p(z))",
        "https://arxiv.org/abs/1706.02262",
        lambda s, context: InfoVae(s.alpha, s.lam, s.kernel, s.scale),
        InfoVaeSettings,
        needs=_NEEDS,
        offers=frozenset({"elbo"}),
        min_batch=2,
    ),
    MethodSpec(
        "wae",
        "WAE-MMD: a deterministic encoder, reconstruction + lambda MMD (no ELBO)",
        "https://arxiv.org/abs/1711.01558",
        lambda s, context: Wae(s.lam, s.kernel, s.scale),
        WaeSettings,
        needs=_NEEDS,
        min_batch=2,
    ),
)
