"""The two-stochastic-layer ladder VAE (issue 6): its Gaussian algebra against independent
computations, its IWAE weights against its ELBO, and that it trains and evaluates end to end."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import blob_images, iwae_and_elbo, train_briefly
from vaekit.config import DataConfig, ModelConfig
from vaekit.data.transforms import to_model_input
from vaekit.distributions import DiagonalGaussian, kl_gaussians, kl_standard_normal
from vaekit.errors import VaekitError
from vaekit.metrics.evaluation import collapse_warning
from vaekit.metrics.latents import bottom_layer_active_units
from vaekit.models import build_model
from vaekit.models.ladder import LadderVAE, precision_weighted
from vaekit.presets import resolve

LADDER = ModelConfig(hidden_sizes=(64,), latent_dim=6, stochastic_layers=2, top_latent_dim=3, top_hidden_size=32)


def gaussian(seed: int, shape: tuple[int, ...] = (4, 5)) -> DiagonalGaussian:
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=generator, dtype=torch.float64)
    return DiagonalGaussian(mu, 0.8 * torch.randn(shape, generator=generator, dtype=torch.float64))


def test_kl_between_gaussians_matches_monte_carlo_and_the_standard_normal_form() -> None:
    q, p = gaussian(0), gaussian(1)
    noise = torch.randn((200_000, *q.mu.shape), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    samples = q.mu + q.std * noise  # (S, 4, 5) draws from q
    monte_carlo = (q.log_prob(samples) - p.log_prob(samples)).mean(0)  # (4,)
    assert kl_gaussians(q, p).sum(-1).tolist() == pytest.approx(monte_carlo.tolist(), abs=0.05)
    standard = DiagonalGaussian(torch.zeros_like(q.mu), torch.zeros_like(q.logvar))
    assert torch.allclose(kl_gaussians(q, standard), kl_standard_normal(q.mu, q.logvar))


def test_precision_weighting_is_the_normalised_product_of_densities() -> None:
    a, b = gaussian(4), gaussian(5)
    product = precision_weighted(a, b)
    # log N(z; a) + log N(z; b) - log N(z; product) must not depend on z (per row and dimension).
    z = torch.randn((7, 4, 5), generator=torch.Generator().manual_seed(6), dtype=torch.float64)

    def log_density(g: DiagonalGaussian, v: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((v - g.mu) ** 2 * torch.exp(-g.logvar) + g.logvar + math.log(2 * math.pi))

    gap = log_density(a, z) + log_density(b, z) - log_density(product, z)
    assert torch.allclose(gap, gap[0].expand_as(gap), atol=1e-9)


def ladder_and_batch() -> tuple[LadderVAE, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(LADDER, (1, 8, 8))
    assert isinstance(model, LadderVAE)
    return model, to_model_input(torch.from_numpy(blob_images(16, side=8)[0]), DataConfig())


def test_iwae_weights_with_the_elbo_noise_give_the_elbo_reconstruction_and_its_expected_kl() -> None:
    model, x = ladder_and_batch()
    eps = torch.randn((16, model.noise_dim), generator=torch.Generator().manual_seed(1))
    terms = model.elbo(x, eps=eps)
    _, log_px = model.log_weights(x, model.encode(x), 1, eps=eps.unsqueeze(0))
    assert torch.allclose(-log_px[0], terms.recon_nats, atol=1e-4)  # the same z1: the same reconstruction
    # E[log q - log p] over the noise is the closed-form KL the ELBO uses.
    many = torch.randn((4000, 16, model.noise_dim), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        weights, px = model.log_weights(x, model.encode(x), 4000, eps=many)
        sampled_kl = (px - weights).mean(0)
        # The closed form integrates z1 for one z2: average it over the same z2 draws.
        closed_kl = torch.stack([model.elbo(x, eps=many[i]).kl_nats for i in range(4000)]).mean(0)
    assert sampled_kl.tolist() == pytest.approx(closed_kl.tolist(), abs=0.1)


def test_the_ladder_trains_samples_and_evaluates() -> None:
    model, x = ladder_and_batch()
    losses = train_briefly(model, x, steps=80)
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in model.parameters())
    assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 8, 8)
    assert model.reconstruct(x).shape == x.shape
    assert model.encode(x).mu.shape == (16, 3)  # maps and traversals show the top layer z2
    iwae, elbo = iwae_and_elbo(model, x, k=50)
    assert iwae >= elbo - 1.0  # the K=50 bound is at least the ELBO (up to noise)


def test_two_layers_take_only_the_standard_normal_prior() -> None:
    with pytest.raises(VaekitError, match="--stochastic-layers 2"):
        resolve(preset="mlp", flags={"model": {"stochastic_layers": 2, "prior": "vamp"}})
    with pytest.raises(VaekitError, match="use 1 or 2"):
        resolve(preset="mlp", flags={"model": {"stochastic_layers": 3}})


def test_evaluation_counts_both_layers_and_warns_only_when_z1_collapses() -> None:
    model, x = ladder_and_batch()
    train_briefly(model, x, steps=60)
    images = (x * 255).to(torch.uint8).numpy()
    bottom = bottom_layer_active_units(model, images, DataConfig())
    means = model.bottom_means(x).detach()
    assert bottom == int((means.var(dim=0, unbiased=False) > 0.01).sum()) and 1 <= bottom <= 6
    # z2 nearly unused but z1 in use: no collapse warning; z1 unused: a warning naming z1
    assert (
        collapse_warning({"active_units": 0, "latent_dim": 3, "bottom_active_units": 5, "bottom_latent_dim": 6}) is None
    )
    message = collapse_warning({"active_units": 3, "latent_dim": 3, "bottom_active_units": 1, "bottom_latent_dim": 6})
    assert message is not None and "of 6 dimensions of z1" in message


def test_under_bf16_autocast_every_distribution_is_fp32() -> None:
    """Only the networks run in bf16: q(z2|x), p(z1|z2), q(z1|x, z2) and their KLs stay fp32."""
    torch.manual_seed(0)
    model = build_model(LADDER, (1, 8, 8))
    x = to_model_input(torch.from_numpy(blob_images(4, side=8)[0]), DataConfig())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        top = model.encode(x)
        down = model._descend(top, torch.zeros_like(top.mu), torch.zeros_like(top.bottom_up.mu))
        terms = model.elbo(x, generator=torch.Generator().manual_seed(0))
    for tensor in (top.mu, top.logvar, top.bottom_up.mu, down.prior1.mu, down.posterior1.logvar, terms.kl_nats):
        assert tensor.dtype == torch.float32


def test_prior_samples_draw_z1_from_p_z1_given_z2() -> None:
    """Ancestral sampling: z2 ~ N(0, I), then z1 ~ p(z1|z2) drawn (not its mean), then E[x|z1]."""
    torch.manual_seed(0)
    model = build_model(LADDER, (1, 8, 8)).eval()
    got = model.sample(5, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        z2 = torch.randn((5, 3), generator=generator)
        z1 = model.top_down(z2).rsample(generator)
        by_hand = model.mean_image(model.decode_bottom(z1))
    assert torch.allclose(got, by_hand)
