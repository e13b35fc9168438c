import math

import pytest
import torch

from vaekit.distributions import kl_standard_normal
from vaekit.likelihoods.gaussian import GaussianLikelihood
from vaekit.objectives import beta_at, bits_per_dim, elbo_terms, free_bits_kl
from vaekit.presets import mse_kl_sigma


def test_elbo_terms_combine_parts() -> None:
    log_px = torch.tensor([-10.0, -20.0])
    kl = torch.tensor([[1.0, 2.0], [0.5, 0.5]])
    terms = elbo_terms(log_px, kl, beta=0.5)
    assert torch.allclose(terms.recon_nats, torch.tensor([10.0, 20.0]))
    assert torch.allclose(terms.kl_nats, torch.tensor([3.0, 1.0]))
    assert torch.allclose(terms.loss, torch.tensor([11.5, 20.5]))
    assert torch.allclose(terms.nelbo_nats, torch.tensor([13.0, 21.0]))


def test_free_bits_floors_each_dimension_by_its_batch_mean() -> None:
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]], requires_grad=True)  # dim 0 mean 0.2, dim 1 mean 3.0
    floored = free_bits_kl(kl, free_bits=0.5)
    assert torch.allclose(floored, torch.tensor([0.5 + 2.0, 0.5 + 4.0]))
    floored.sum().backward()
    assert kl.grad is not None
    assert torch.equal(kl.grad[:, 0], torch.zeros(2))  # below the floor: no pressure to shrink
    assert torch.equal(kl.grad[:, 1], torch.ones(2))
    assert torch.equal(free_bits_kl(kl.detach(), 0.0), kl.detach().sum(-1))


def test_beta_warmup_is_linear_then_flat() -> None:
    assert beta_at(0, 2.0, 100) == 0.0
    assert beta_at(50, 2.0, 100) == pytest.approx(1.0)
    assert beta_at(100, 2.0, 100) == 2.0
    assert beta_at(1000, 2.0, 100) == 2.0
    assert beta_at(0, 2.0, 0) == 2.0


def test_bits_per_dim() -> None:
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # A density with bin width 1/256: -log P = nll + D log 256, i.e. 8 more bits per dim.
    assert bits_per_dim(0.0, 10, math.log(1 / 256)) == pytest.approx(8.0)


def test_mean_mse_plus_point_one_kl_equals_an_elbo_up_to_scale() -> None:
    """The conv-32px recipe: mean((x - x_hat)^2) + 0.1 * mean_j KL_j has the same gradients as
    the negative ELBO with sigma = mse_kl_sigma(D, Z) and beta = 1, scaled by Z / 0.1."""
    torch.manual_seed(0)
    d, z_dim = 48, 6
    x = torch.rand(1, 1, 6, 8)
    x_hat = torch.rand(1, 1, 6, 8, requires_grad=True)
    mu = torch.randn(1, z_dim, requires_grad=True)
    logvar = torch.randn(1, z_dim, requires_grad=True)

    recipe = (x - x_hat).pow(2).mean() + 0.1 * kl_standard_normal(mu, logvar).mean()
    recipe_grads = torch.autograd.grad(recipe, [x_hat, mu, logvar])

    likelihood = GaussianLikelihood("fixed", mse_kl_sigma(d, z_dim), (1, 6, 8))
    nelbo = elbo_terms(likelihood.log_prob(x, x_hat), kl_standard_normal(mu, logvar)).loss.sum()
    elbo_grads = torch.autograd.grad(nelbo, [x_hat, mu, logvar])
    scale = z_dim / 0.1
    for a, b in zip(recipe_grads, elbo_grads, strict=True):
        assert torch.allclose(a * scale, b, atol=1e-5)
