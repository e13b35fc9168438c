"""Vector quantisation, the VQ-VAE's posterior (van den Oord et al. 2017, "Neural discrete
representation learning", https://arxiv.org/abs/1711.00937).

The encoder gives M vectors z_e of size D per item (a code map's positions, or an MLP's code
vectors); each is replaced by its nearest of K codebook vectors e_k, and the decoder sees those.
q(z|x) is a point mass on the chosen codes, so against a prior p over code maps the KL is
-log p(codes): M log K under the uniform prior, less under a learned one (models/code_prior.py).
Training passes the decoder's gradient straight through the rounding (z_e + sg[z_q - z_e]), pulls
z_e towards its code with the commitment loss beta ||z_e - sg[e]||^2, and moves the codes either
by the codebook loss ||sg[z_e] - e||^2 or, by default, as exponential moving averages of the
vectors assigned to them (the paper's appendix A.1):

    N_k <- g N_k + (1 - g) n_k,   m_k <- g m_k + (1 - g) sum_{i: k(i) = k} z_e,i,   e_k = m_k / N_k.

N_k starts at 1 and m_k at e_k, so a code nothing is assigned to keeps its vector. The first
training step sets every code to an encoding drawn from the batch, and codes whose use has faded
later (its moving average under DEAD_FRACTION of the average code's) are restarted the same way.
Shapes: N vectors, K codes, D code size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# A code used less than this fraction of the average code's use (moving averages) is dead.
DEAD_FRACTION = 0.03


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of each vector's nearest code in squared Euclidean distance: (N, D), (K, D) -> (N,).
    ||v - e_k||^2 = ||v||^2 - 2 v.e_k + ||e_k||^2, and ||v||^2 is the same for every k: one fused
    matrix product and a minimum (whose indices PyTorch finds over three times faster than argmin's
    on the CPU: 0.75 against 2.5 ms for 2,560 x 512, one thread)."""
    return torch.addmm(codebook.pow(2).sum(-1), vectors, codebook.t(), alpha=-2.0).min(-1).indices


def assignment_statistics(vectors: torch.Tensor, codes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How many vectors each code got, (K,), and their sum, (K, D)."""
    counts = torch.bincount(codes, minlength=size).to(vectors.dtype)
    sums = torch.zeros(size, vectors.shape[-1], dtype=vectors.dtype, device=vectors.device).index_add_(
        0, codes, vectors
    )
    return counts, sums


def ema_step(
    cluster_size: torch.Tensor, embed_sum: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA update: the new N (K,), m (K, D) and codebook m / N (K, D)."""
    cluster_size = decay * cluster_size + (1.0 - decay) * counts
    embed_sum = decay * embed_sum + (1.0 - decay) * sums
    # N_k >= g^t > 0 from its start at 1; the floor only keeps a long-forgotten code finite
    return cluster_size, embed_sum, embed_sum / cluster_size.clamp(min=1e-30).unsqueeze(-1)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the batch's code frequencies: how many codes it uses, effectively."""
    p = counts / counts.sum().clamp(min=1.0)
    return torch.exp(-(torch.special.xlogy(p, p)).sum())


@dataclass(frozen=True)
class Quantised:
    """One pass through the codebook: codes (N,), their vectors z_q (N, D), and z_e's straight-through
    copy (z_q in value, z_e's gradient)."""

    codes: torch.Tensor
    z_q: torch.Tensor
    straight_through: torch.Tensor


def _dead(usage: torch.Tensor, steps: int, decay: float) -> torch.Tensor:
    """(K,) bool: codes whose use (a moving average after `steps` updates), bias-corrected, is
    under DEAD_FRACTION of the average code's."""
    if steps == 0:
        return torch.zeros(usage.shape, dtype=torch.bool, device=usage.device)
    use = usage / (1.0 - decay**steps)
    return use < DEAD_FRACTION * use.mean()


class Codebook(nn.Module):
    """K codes of size D, updated by moving averages (`ema`) or by the codebook loss."""

    codebook: torch.Tensor  # (K, D): a buffer under EMA, a parameter otherwise
    cluster_size: torch.Tensor  # (K,) N_k (EMA only)
    embed_sum: torch.Tensor  # (K, D) m_k (EMA only)
    usage: torch.Tensor  # (K,) moving average of the vectors each code gets per step
    steps: torch.Tensor  # () updates so far, for the moving average's bias correction

    def __init__(self, size: int, dim: int, ema: bool, decay: float) -> None:
        super().__init__()
        self.size, self.dim, self.ema, self.decay = size, dim, ema, decay
        # Codes start spread like unit-variance encodings would be; the encoder learns to meet them.
        initial = torch.randn(size, dim) / math.sqrt(dim)
        if ema:
            self.register_buffer("codebook", initial)
            self.register_buffer("cluster_size", torch.ones(size))
            self.register_buffer("embed_sum", initial.clone())
        else:
            self.codebook = nn.Parameter(initial)
        self.register_buffer("usage", torch.zeros(size))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def quantise(self, vectors: torch.Tensor) -> Quantised:
        """(N, D) -> the nearest codes and their vectors, in the vectors' dtype."""
        codebook = self.codebook.to(vectors.dtype)
        with torch.no_grad():
            codes = nearest_codes(vectors.detach(), codebook)
        z_q = codebook[codes]  # (N, D): the codebook loss's gradient reaches e_k through here
        return Quantised(codes, z_q, vectors + (z_q - vectors).detach())

    def dead(self) -> torch.Tensor:
        """(K,) bool: codes whose bias-corrected use is under DEAD_FRACTION of the average."""
        return _dead(self.usage, int(self.steps), self.decay)

    def restarts(self, counts: torch.Tensor, available: int) -> int:
        """How many codes `update(counts, ...)` will restart with `available` vectors to restart
        them at, computed without changing anything (what a training step reports)."""
        if int(self.steps) == 0:  # the first update starts every code
            return min(self.size, available)
        usage = self.usage * self.decay + (1.0 - self.decay) * counts.float()
        return min(int(_dead(usage, int(self.steps) + 1, self.decay).sum()), available)

    @torch.no_grad()
    def update(self, counts: torch.Tensor, sums: torch.Tensor, restart_from: torch.Tensor) -> int:
        """After a training step's assignments over the whole global batch (counts (K,), sums (K, D)):
        the moving averages, then dead codes restarted at the vectors `restart_from` (R, D) offers,
        one each in order. Returns how many codes were restarted."""
        counts, sums = counts.float(), sums.float()
        first = int(self.steps) == 0
        self.usage.mul_(self.decay).add_((1.0 - self.decay) * counts)
        self.steps += 1
        if self.ema:
            size, total, codebook = ema_step(self.cluster_size, self.embed_sum, counts, sums, self.decay)
            self.cluster_size.copy_(size)
            self.embed_sum.copy_(total)
            self.codebook.copy_(codebook)
        # The first step starts every code at an encoding: random codes far from where the encoder
        # puts its vectors would leave all but a few unused.
        dead_now = torch.ones_like(self.usage, dtype=torch.bool) if first else self.dead()
        dead = dead_now.nonzero().squeeze(-1)[: len(restart_from)]
        if len(dead):
            fresh = restart_from[: len(dead)].to(self.codebook.dtype)
            self.codebook.data[dead] = fresh
            if self.ema:  # as if the new vector had been assigned once
                self.cluster_size[dead] = 1.0
                self.embed_sum[dead] = fresh
            corrected_mean = (self.usage / (1.0 - self.decay ** int(self.steps))).mean()
            self.usage[dead] = corrected_mean * (1.0 - self.decay ** int(self.steps))
        return len(dead)
