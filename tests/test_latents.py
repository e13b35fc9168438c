"""How a model uses its latent space: active units and KL per dimension (metrics/latents.py)."""

import numpy as np
import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig
from vaekit.data.transforms import to_model_input
from vaekit.metrics.latents import latent_usage
from vaekit.models import build_model

DATA = DataConfig()


def tiny_model(seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden_sizes=(32,), latent_dim=3), (1, 8, 8)).eval()


def blobs(n: int) -> np.ndarray:
    return blob_images(n, side=8)[0]


def test_active_units_are_zero_when_the_decoder_ignores_z() -> None:
    """With a decoder that cannot see z, the KL term drives every posterior to the prior."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=(32,), latent_dim=4), (1, 8, 8))
    first = model.decoder.body[0]
    with torch.no_grad():
        first.weight.zero_()
    first.weight.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = to_model_input(torch.from_numpy(blobs(256)), DATA)
    for _ in range(300):
        optimizer.zero_grad()
        model.elbo(x).loss.mean().backward()
        optimizer.step()
    usage = latent_usage(model, blobs(256), DATA)
    assert usage.active_units == 0
    assert max(usage.kl_per_dim_nats) < 0.05


def test_active_units_count_informative_dimensions() -> None:
    model = tiny_model()
    with torch.no_grad():  # make mu_0 depend strongly on the input and the rest constant
        model.encoder.head.weight.zero_()
        model.encoder.head.bias.zero_()
        model.encoder.head.weight[0].normal_(0, 1)
    usage = latent_usage(model, blobs(200), DATA)
    assert usage.active_units == 1
    assert usage.order[0] == 0
