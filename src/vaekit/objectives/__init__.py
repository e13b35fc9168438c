"""The training objective as pure functions of tensors.

ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), estimated with one reparameterised sample.
Per-example terms have shape (B,) and are in nats; the caller reduces.
"""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class KlPart:
    """A part of the KL term, (..., B, n): n columns, each one latent dimension's KL in closed form,
    or, with `group_sizes`, one KL per group of that many latents (a layer whose KL does not split
    by dimension: a flow's, a vMF's, a Monte Carlo estimate). Free bits floor each part by itself."""

    values: torch.Tensor
    group_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ModelTerms:
    """What a model gives an objective at draws z ~ q(z|x), each (*S, B) for S draws per item, or
    (B,) for one: log p(x|z), log p(z) and log q(z|x); the KL term in parts as the model has it
    (None: only as log q - log p, from the weights); and, for a sampler whose reparameterised
    gradient alone is biased (the vMF's), the log-ratio whose score corrects it (vmf.py)."""

    z: torch.Tensor  # (*S, B, Z): the draws (a ladder's bottom layer)
    log_px: torch.Tensor
    # log p(z) and log q(z|x), computed when first asked for: the ELBO of a model whose KL is in
    # closed form needs neither, and a training step should not pay for them
    densities: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    kl: tuple[KlPart, ...] | None = None
    correction: torch.Tensor | None = None

    @functools.cached_property
    def _densities(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.densities()

    @property
    def log_pz(self) -> torch.Tensor:
        return self._densities[0]

    @property
    def log_q(self) -> torch.Tensor:
        return self._densities[1]

    @property
    def log_w(self) -> torch.Tensor:
        return log_importance_weights(self.log_px, self.log_pz, self.log_q)

    @property
    def kl_per_dim(self) -> torch.Tensor | None:
        """The KL per latent dimension (B, Z) where the model has it in closed form, else None."""
        if self.kl is None or len(self.kl) != 1 or self.kl[0].group_sizes is not None:
            return None
        return self.kl[0].values

    def kl_nats(self) -> torch.Tensor:
        """The KL per item, (B,): its parts summed (their mean over the draws), or log p(x|z) - log w."""
        if self.kl is None:
            gap = self.log_px - self.log_w  # log q - log p(z), draw by draw
            return gap.mean(0) if gap.dim() > 1 else gap
        total = self.kl[0].values.sum(-1)
        for part in self.kl[1:]:
            total = total + part.values.sum(-1)
        return total.mean(0) if total.dim() > 1 else total

    def kl_loss(self, free_bits: float, batch_mean: BatchMean | None) -> torch.Tensor:
        """The KL the loss weighs, (B,): each part floored by free bits (one draw per item)."""
        if self.kl is None:
            raise ValueError("this model gives no KL term for one draw")  # a vaekit bug, not user input
        loss = free_bits_kl(self.kl[0].values, free_bits, batch_mean, self.kl[0].group_sizes)
        for part in self.kl[1:]:
            loss = loss + free_bits_kl(part.values, free_bits, batch_mean, part.group_sizes)
        return loss


def corrected(value: torch.Tensor, correction: torch.Tensor | None) -> torch.Tensor:
    """`value`, a function of the draws, with the sampler's correction added to its gradient (its
    forward value unchanged); itself where the reparameterised gradient is exact."""
    if correction is None:
        return value
    return value + value.detach() * (correction - correction.detach())


def elbo_of(terms: ModelTerms, beta: float, free_bits: float, batch_mean: BatchMean | None) -> ElboTerms:
    """The ELBO's loss and parts from one draw per item: -log p(x|z) + beta * KL', KL' with free bits."""
    log_px = corrected(terms.log_px, terms.correction)
    loss = -log_px + beta * terms.kl_loss(free_bits, batch_mean)
    return ElboTerms(loss=loss, recon_nats=-log_px, kl_nats=terms.kl_nats())


def iwae_of(terms: ModelTerms) -> ElboTerms:
    """The importance-weighted objective from K draws per item (Burda et al. 2016): loss =
    -log (1/K) sum_k w_k, with the ELBO's parts from the same draws reported beside it (the K-draw
    mean of -log p(x|z), and the KL); K = 1 is the ELBO itself."""
    loss = -iwae_bound(terms.log_w)
    if terms.correction is not None:
        # the bound is a function of all K draws: the sampler's correction is their summed score
        score = terms.correction.sum(0)  # (B,)
        loss = loss + loss.detach() * (score - score.detach())
    return ElboTerms(loss=loss, recon_nats=-terms.log_px.mean(0), kl_nats=terms.kl_nats())


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
