"""How a model uses its latent space: KL per dimension, active units, the latent codes of a
dataset.

Shapes: N images, B batch, Z latent (Z1 for a two-layer model's bottom layer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import labelled_batches
from vaekit.errors import VaekitError
from vaekit.models import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Cov_x(E_q[z_j]) above this is "active"


@dataclass(frozen=True)
class LatentUsage:
    # mean over the data of KL(q(z_j|x) || N(0,1)), per dimension; None for a posterior whose KL
    # does not split by dimension (an IAF's, a vMF's)
    kl_per_dim_nats: list[float] | None
    mean_variance: list[float]  # Cov_x(E_q[z_j]) per dimension (of the posterior's point code)
    active_units: int

    @property
    def order(self) -> list[int]:
        """Latent dimensions, most informative first: by KL, or by how much the code moves over
        the data where there is no KL per dimension."""
        key = self.kl_per_dim_nats if self.kl_per_dim_nats is not None else self.mean_variance
        return sorted(range(len(key)), key=lambda j: -key[j])

    def to_dict(self) -> dict[str, object]:
        usage = {**asdict(self), "active_unit_threshold": ACTIVE_UNIT_THRESHOLD}
        if self.kl_per_dim_nats is None:
            del usage["kl_per_dim_nats"]
        return usage


@torch.inference_mode()
def _per_image(
    encode: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    batch_size: int,
    seed: int,
    labels: np.ndarray | None,
) -> torch.Tensor:
    """encode(x, y) (B, Z) for every image, batch by batch, as float64 on the CPU: (N, Z)."""
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    batches = labelled_batches(images, labels, data, batch_size, model.device, generator)
    return torch.cat([encode(x, y).double().cpu() for x, y in batches])


def bottom_layer_active_units(
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> int:
    """Active units of a two-layer model's z1 (the mean of q(z1|x, z2) at z2's posterior mean)."""
    bottom_means = getattr(model, "bottom_means", None)  # what a model with a layer under its latent gives
    if bottom_means is None:
        raise VaekitError("only a model with two stochastic layers has a z1 to count active units of")
    means = _per_image(bottom_means, model, images, data, batch_size, seed, labels)  # (N, Z1)
    return int((means.var(dim=0, unbiased=False) > ACTIVE_UNIT_THRESHOLD).sum())


def latent_means(
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """E_q[z|x] for every image, (N, Z): the posterior's point code (its mean for a Gaussian)."""
    return _per_image(lambda x, y: model.encode(x, y).mode(), model, images, data, batch_size, seed, labels).numpy()


@torch.inference_mode()
def latent_usage(
    model: VAE,
    images: np.ndarray,
    data: DataConfig,
    batch_size: int = 1000,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> LatentUsage:
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    means, kls = [], []
    batches = labelled_batches(images, labels, data, batch_size, model.device, generator)
    for x, y in batches:
        posterior = model.encode(x, y)
        means.append(posterior.mode().double().cpu())
        if hasattr(posterior, "kl_per_dim"):  # a diagonal Gaussian (a ladder's q(z2|x) too)
            kls.append(posterior.kl_per_dim().double().sum(0).cpu())
    mu = torch.cat(means)  # (N, Z)
    variance = mu.var(dim=0, unbiased=False) if mu.shape[1] else mu.new_zeros(0)  # Cov_x(E_q[z_j]) for each j
    kl_per_dim = (torch.stack(kls).sum(0) / len(images)).tolist() if kls else None
    return LatentUsage(
        kl_per_dim_nats=kl_per_dim,
        mean_variance=variance.tolist(),
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()),
    )
