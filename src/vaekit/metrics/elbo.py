"""Dataset-level ELBO: the per-image negative ELBO and its parts averaged over a whole set."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import model_batches, pixel_bin_width
from vaekit.models import VAE
from vaekit.objectives import bits_per_dim


@dataclass(frozen=True)
class ElboSummary:
    nelbo_nats: float  # negative ELBO, nats per image
    recon_nats: float  # -E_q[log p(x|z)], nats per image
    kl_nats: float  # KL(q(z|x) || p(z)), nats per image
    bits_per_dim: float
    images: int

    def to_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}


def log_bin_width(model: VAE, data: DataConfig) -> float:
    """0 for discrete likelihoods; log of the pixel bin width for densities (see bits_per_dim)."""
    return math.log(pixel_bin_width(data)) if model.likelihood.support == "continuous" else 0.0


@torch.inference_mode()
def elbo_over(
    model: VAE, images: np.ndarray | torch.Tensor, data: DataConfig, batch_size: int, seed: int = 0
) -> ElboSummary:
    """Mean single-sample negative ELBO over `images` (uint8, (N, C, H, W)), with a fixed seed
    so that the same model on the same data always gets the same number."""
    was_training = model.training
    model.eval()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for x in model_batches(images, data, batch_size, device, generator):
        terms = model.elbo(x, generator=generator)
        totals += torch.stack([terms.recon_nats.sum(), terms.kl_nats.sum()]).double()
    model.train(was_training)
    n = len(images)
    recon, kl = (totals / max(1, n)).tolist()
    return summarise(model, data, recon, kl, n)


def summarise(model: VAE, data: DataConfig, recon_nats: float, kl_nats: float, images: int) -> ElboSummary:
    """The summary of a set from its mean reconstruction term and KL, in nats per image."""
    nelbo = recon_nats + kl_nats
    num_dims = math.prod(model.image_shape)
    return ElboSummary(nelbo, recon_nats, kl_nats, bits_per_dim(nelbo, num_dims, log_bin_width(model, data)), images)
