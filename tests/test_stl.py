"""Sticking the landing against independent computations: its value is the one-draw ELBO
estimate (IWAE with K = 1 from the same noise), its decoder gradient that estimate's, and its
encoder gradient that estimate's less the score term, which averages to zero under q."""

from __future__ import annotations

import math

import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, with_overrides
from vaekit.data.transforms import to_model_input
from vaekit.distributions import DiagonalGaussian
from vaekit.models import VAE, build_run_model
from vaekit.objectives.base import StepBatch
from vaekit.objectives.registry import build_objective

CONFIG = with_overrides(RunConfig(model=ModelConfig(hidden_sizes=(16,), latent_dim=3)), {"objective": {"name": "stl"}})


NOISE_SEED = 3


def setup(n: int = 8) -> tuple[VAE, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_run_model(CONFIG, (1, 8, 8))
    x = to_model_input(torch.from_numpy(blob_images(n, side=8)[0]), DataConfig())
    # the noise the step's batch draws (StepBatch.noise) from a stream seeded alike: the same draws
    eps = torch.randn((n, model.noise_dim), generator=torch.Generator().manual_seed(NOISE_SEED))
    return model, x, eps


def stl_loss(model: VAE, x: torch.Tensor) -> torch.Tensor:
    batch = StepBatch(x, None, 0, 1.0, slice(0, len(x)), len(x), torch.Generator().manual_seed(NOISE_SEED))
    return build_objective(CONFIG, dataset_size=100)(model, batch).loss


def grads(model: VAE, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_its_value_is_the_one_draw_elbo_estimate() -> None:
    model, x, eps = setup()
    reference = model.iwae(x, 1, eps=eps[None]).loss  # K = 1: -(log p(x, z) - log q(z|x)) at z = mu + sigma eps
    assert torch.allclose(stl_loss(model, x), reference, atol=1e-5)


def test_its_gradient_is_the_estimates_less_the_score_term() -> None:
    model, x, eps = setup()
    full = grads(model, model.iwae(x, 1, eps=eps[None]).loss)
    sticking = grads(model, stl_loss(model, x))
    posterior = model.encode(x)
    z = posterior.rsample(eps=eps).detach()
    score = grads(model, DiagonalGaussian(posterior.mu, posterior.logvar).log_prob(z))  # d/dphi log q at fixed z
    for name, g in full.items():
        assert torch.allclose(g, sticking[name] + score.get(name, torch.zeros_like(g)), atol=1e-4), name
    decoder = [name for name in full if name.startswith("decoder")]
    assert decoder and all(torch.allclose(full[n], sticking[n], atol=1e-5) for n in decoder)
    assert any(not torch.allclose(full[n], sticking[n], atol=1e-4) for n in full if n.startswith("encoder"))


def test_the_score_term_it_drops_averages_to_zero() -> None:
    """E_q[d/dmu log q(z)] = E[(z - mu) / sigma^2] = 0: over many draws the dropped term vanishes,
    so the estimate stays unbiased."""
    mu, logvar = torch.zeros(3, requires_grad=True), torch.full((3,), -0.5, requires_grad=True)
    draws = 20_000
    z = (mu + (0.5 * logvar).exp() * torch.randn(draws, 3, generator=torch.Generator().manual_seed(0))).detach()
    mean_score = torch.autograd.grad(DiagonalGaussian(mu, logvar).log_prob(z).mean(), (mu, logvar))
    per_draw_mu = (z - mu.detach()) / logvar.detach().exp()  # (S, Z): each draw's score in mu, in closed form
    spread = per_draw_mu.std(0) / math.sqrt(draws)
    assert torch.allclose(mean_score[0], per_draw_mu.mean(0), atol=1e-5)
    assert (mean_score[0].abs() <= 4 * spread).all()
    assert (mean_score[1].abs() <= 0.05).all()  # in logvar: 0.5 ((z - mu)^2 / sigma^2 - 1), mean 0
