"""The importance-weighted estimate of log p(x) (Burda et al. 2016, https://arxiv.org/abs/1509.00519):
a lower bound on log p(x) that tightens as K grows, computed in chunks so memory does not grow
with K.

Shapes: B batch, K importance samples (processed in chunks of K_c), (C, H, W) image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import labelled_batches
from vaekit.metrics.meaning import figure_meaning
from vaekit.models import VAE

# Decoder outputs held at once while estimating: K_c * B * C*H*W floats. 2^23 floats = 32 MiB
# keeps memory bounded whatever K and the batch size are.
MAX_DECODED_VALUES = 1 << 23


@dataclass(frozen=True)
class IwaeSummary:
    nll_nats: float  # -log p(x) estimate, nats per image (an upper bound in expectation); see `figure`
    bits_per_dim: float | None  # None where the nats are not a likelihood (meaning.py)
    k: int
    images: int
    standard_error_nats: float = 0.0  # of the mean over images (the spread between images)
    figure: str = "likelihood"  # meaning.Kind: what the nats are

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _chunk_size(k: int, batch: int, pixels: int) -> int:
    return max(1, min(k, MAX_DECODED_VALUES // max(1, batch * pixels)))


@torch.inference_mode()
def iwae_per_image(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
) -> torch.Tensor:
    """log p(x) estimated with K importance samples from q(z|x), for a batch x, shape (B,); for a
    conditional model, log p(x|y) with q(z|x, y).

    The K samples are drawn in chunks and combined with a running log-sum-exp, so memory does
    not grow with K.
    """
    posterior = model.encode(x, y)
    batch, pixels = x.shape[0], math.prod(x.shape[1:])
    chunk = _chunk_size(k, batch, pixels)
    running = torch.full((batch,), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        k_c = min(chunk, k - done)
        log_w, _ = model.log_weights(x, posterior, k_c, generator, y=y)  # (K_c, B)
        running = torch.logaddexp(running, torch.logsumexp(log_w.double(), dim=0))
        done += k_c
    return running - math.log(k)


@torch.inference_mode()
def iwae_per_item(
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    k: int,
    batch_size: int = 100,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> torch.Tensor:
    """The IWAE estimate of log p(x) for every stored item (N, C, H, W), float64 (N,). The same
    seed and batch size give the same numbers as `iwae_over` (which averages these)."""
    model.eval()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.cat(
        [
            iwae_per_image(model, x, k, generator, y).double().cpu()
            for x, y in labelled_batches(images, labels, data, batch_size, device, generator)
        ]
    )


def iwae_over(
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    k: int,
    batch_size: int = 100,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> IwaeSummary:
    """Mean importance-weighted -log p(x) over uint8 images (N, C, H, W)."""
    return iwae_summary(model, data, iwae_per_item(model, images, data, k, batch_size, seed, labels), k)


def iwae_summary(model: VAE, data: DataConfig, per_image: torch.Tensor, k: int) -> IwaeSummary:
    """The set's figure from `iwae_per_item`'s estimates of log p(x), (N,): their mean -log p(x),
    its standard error and bits/dim where honest."""
    nll = -float(per_image.mean())
    spread = float(per_image.std()) / math.sqrt(len(per_image)) if len(per_image) > 1 else 0.0
    meaning = figure_meaning(model.likelihood, data)
    bits = meaning.bits_per_dim(nll, math.prod(model.image_shape))
    return IwaeSummary(nll, bits, k, len(per_image), spread, meaning.kind)
