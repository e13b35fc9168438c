"""The training objective as pure functions of tensors.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), estimated with one reparameterised sample.
Per-example terms have shape (B,) and are in nats; the caller reduces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ElboTerms:
    """Per-example terms, each (B,), in nats.

    recon_nats = -log p(x|z); kl_nats = KL(q||p) summed over Z; loss = recon + beta * KL' where KL'
    is the KL with free bits applied. The negative ELBO itself is `nelbo_nats` (beta = 1, no
    free bits), the number to report.
    """

    loss: torch.Tensor
    recon_nats: torch.Tensor
    kl_nats: torch.Tensor

    @property
    def nelbo_nats(self) -> torch.Tensor:
        return self.recon_nats + self.kl_nats


# (B, Z) KL per dimension of this batch -> (Z,) its mean over the whole global batch, which in a
# distributed run spans every rank's rows.
BatchMean = Callable[[torch.Tensor], torch.Tensor]


def free_bits_kl(
    kl_per_dim: torch.Tensor,
    free_bits: float,
    batch_mean: BatchMean | None = None,
    group_sizes: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """KL with a floor of `free_bits` nats per latent dimension (Kingma et al. 2016, IAF paper).

    The floor applies to each dimension's KL averaged over the batch (`batch_mean`, by default
    this tensor's own mean): dimensions below it get no gradient from the KL term.
    (B, Z) -> (B,); with free_bits = 0 this is the plain summed KL. Where the KL does not split by
    dimension (a flow's, a vMF's), the columns are groups of latents, one KL each (a layer's), and
    `group_sizes` their sizes: each group's floor is free_bits times its size, as in the IAF paper.
    """
    if free_bits <= 0:
        return kl_per_dim.sum(-1)
    mean = kl_per_dim.mean(0) if batch_mean is None else batch_mean(kl_per_dim)
    floors = torch.full_like(mean, free_bits)  # (Z,) or (G,)
    if group_sizes is not None:
        floors = floors * torch.tensor(group_sizes, dtype=mean.dtype, device=mean.device)
    below = mean < floors
    return torch.where(below[None], floors[None].expand_as(kl_per_dim), kl_per_dim).sum(-1)


def elbo_terms(
    log_px_given_z: torch.Tensor,
    kl_per_dim: torch.Tensor,
    beta: float = 1.0,
    free_bits: float = 0.0,
    batch_mean: BatchMean | None = None,
) -> ElboTerms:
    """Combine log p(x|z) (B,) and the per-dimension KL (B, Z) into the loss and its parts."""
    recon = -log_px_given_z
    kl = kl_per_dim.sum(-1)
    loss = recon + beta * free_bits_kl(kl_per_dim, free_bits, batch_mean)
    return ElboTerms(loss=loss, recon_nats=recon, kl_nats=kl)


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """Linear KL warm-up: 0 at step 0, `beta` from step `warmup_steps` on."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at `step` (0-based) of `total_steps`."""
    if schedule == "constant":
        return 1.0
    progress = min(step, total_steps) / max(1, total_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine: 1 at the start, 0 at the end


def bits_per_dim(nll_nats: float, num_dims: int, log_bin_width: float = 0.0) -> float:
    """Nats per image -> bits per dimension.

    For a discrete likelihood (Bernoulli) pass log_bin_width = 0. For a density over pixels whose
    256 intensity levels are `bin_width` apart in model scale, P(bin) ~ p(x) * bin_width per pixel,
    so -log P = nll - D * log(bin_width).
    """
    return (nll_nats - num_dims * log_bin_width) / (num_dims * math.log(2.0))


def log_importance_weights(
    log_px_given_z: torch.Tensor, log_pz: torch.Tensor, log_qz_given_x: torch.Tensor
) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), each (K, B) -> (K, B)."""
    return log_px_given_z + log_pz - log_qz_given_x


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k w_k, (K, B) -> (B,) (Burda et al. 2016,
    https://arxiv.org/abs/1509.00519). K = 1 is the single-sample ELBO; it tightens as K grows."""
    k = log_weights.shape[0]
    return torch.logsumexp(log_weights, dim=0) - math.log(k)
