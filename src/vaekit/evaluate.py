"""Honest numbers for a trained model: negative ELBO, an importance-weighted estimate of
-log p(x), active units and KL per latent dimension.

Shapes: B batch, K importance samples (processed in chunks of K_c), Z latent, (C, H, W) image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import model_batches
from vaekit.models import VAE
from vaekit.models.ladder import LadderVAE
from vaekit.objectives import bits_per_dim
from vaekit.scoring import log_bin_width

# Decoder outputs held at once while estimating: K_c * B * C*H*W floats. 2^23 floats = 32 MiB
# keeps memory bounded whatever K and the batch size are.
MAX_DECODED_VALUES = 1 << 23
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[z_j]) above this is "active"


@dataclass(frozen=True)
class IwaeSummary:
    nll_nats: float  # -log p(x) estimate, nats per image (an upper bound in expectation)
    bits_per_dim: float
    k: int
    images: int
    standard_error_nats: float = 0.0  # of the mean over images (the spread between images)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _chunk_size(k: int, batch: int, pixels: int) -> int:
    return max(1, min(k, MAX_DECODED_VALUES // max(1, batch * pixels)))


@torch.inference_mode()
def iwae_per_image(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) estimated with K importance samples from q(z|x), for a batch x, shape (B,).

    The K samples are drawn in chunks and combined with a running log-sum-exp, so memory does
    not grow with K.
    """
    posterior = model.encode(x)
    batch, pixels = x.shape[0], math.prod(x.shape[1:])
    chunk = _chunk_size(k, batch, pixels)
    running = torch.full((batch,), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        k_c = min(chunk, k - done)
        log_w, _ = model.log_weights(x, posterior, k_c, generator)  # (K_c, B)
        running = torch.logaddexp(running, torch.logsumexp(log_w.double(), dim=0))
        done += k_c
    return running - math.log(k)


@torch.inference_mode()
def iwae_over(
    model: VAE, images: np.ndarray, data: DataConfig, k: int, batch_size: int = 100, seed: int = 0
) -> IwaeSummary:
    """Mean importance-weighted -log p(x) over uint8 images (N, C, H, W)."""
    model.eval()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    per_image = torch.cat(
        [
            iwae_per_image(model, x, k, generator).double().cpu()
            for x in model_batches(images, data, batch_size, device, generator)
        ]
    )
    nll = -float(per_image.mean())
    spread = float(per_image.std()) / math.sqrt(len(per_image)) if len(per_image) > 1 else 0.0
    num_dims = math.prod(model.image_shape)
    return IwaeSummary(nll, bits_per_dim(nll, num_dims, log_bin_width(model, data)), k, len(images), spread)


@dataclass(frozen=True)
class LatentUsage:
    kl_per_dim_nats: list[float]  # mean over the data of KL(q(z_j|x) || N(0,1)), per dimension
    mean_variance: list[float]  # Cov_x(E_q[z_j]) per dimension
    active_units: int

    @property
    def order(self) -> list[int]:
        """Latent dimensions, most informative (largest KL) first."""
        return sorted(range(len(self.kl_per_dim_nats)), key=lambda j: -self.kl_per_dim_nats[j])

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "active_unit_threshold": ACTIVE_UNIT_THRESHOLD}


@torch.inference_mode()
def _per_image(
    encode: Callable[[torch.Tensor], torch.Tensor],
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """encode(x) (B, Z) for every image, batch by batch, as float64 on the CPU: (N, Z)."""
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    batches = model_batches(images, data, batch_size, model.device, generator)
    return torch.cat([encode(x).double().cpu() for x in batches])


def bottom_layer_active_units(
    model: LadderVAE, images: np.ndarray, data: DataConfig, batch_size: int = 1000, seed: int = 0
) -> int:
    """Active units of a two-layer model's z1 (the mean of q(z1|x, z2) at z2's posterior mean)."""
    means = _per_image(model.bottom_means, model, images, data, batch_size, seed)  # (N, Z1)
    return int((means.var(dim=0, unbiased=False) > ACTIVE_UNIT_THRESHOLD).sum())


def latent_means(model: VAE, images: np.ndarray, data: DataConfig, batch_size: int = 1000, seed: int = 0) -> np.ndarray:
    """E_q[z|x] for every image, (N, Z)."""
    return _per_image(lambda x: model.encode(x).mu, model, images, data, batch_size, seed).numpy()


@torch.inference_mode()
def latent_usage(
    model: VAE, images: np.ndarray, data: DataConfig, batch_size: int = 1000, seed: int = 0
) -> LatentUsage:
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    means, kls = [], []
    for x in model_batches(images, data, batch_size, model.device, generator):
        posterior = model.encode(x)
        means.append(posterior.mu.double().cpu())
        kls.append(posterior.kl_per_dim().double().sum(0).cpu())
    mu = torch.cat(means)  # (N, Z)
    variance = mu.var(dim=0, unbiased=False)  # Cov_x(E_q[z_j]) for each j
    kl_per_dim = torch.stack(kls).sum(0) / len(images)
    return LatentUsage(
        kl_per_dim_nats=kl_per_dim.tolist(),
        mean_variance=variance.tolist(),
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()),
    )


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F):
    |m_a - m_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric PSD, so only symmetric eigensolvers are needed.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
