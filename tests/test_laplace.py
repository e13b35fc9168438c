"""The Laplace likelihood (likelihoods/laplace.py): its density against torch.distributions, its
normalisation, its draws and its learned scale's floor. The contract every likelihood keeps
(training, config round trip, refusals, resume) is tests/test_method_contract.py's."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.likelihoods.laplace import MIN_LOG_SCALE, LaplaceLikelihood
from vaekit.methods import choice
from vaekit.models.build import build_likelihood


@pytest.mark.parametrize("scale", ["fixed", "global", "pixel"])
def test_its_log_density_is_the_laplace_one_summed_over_pixels(scale: str) -> None:
    generator = torch.Generator().manual_seed(0)
    likelihood = build_likelihood(choice("likelihood", "laplace", scale=scale, b=0.3), (2, 3, 3))
    x, mean = torch.rand((4, 2, 3, 3), generator=generator), torch.rand((4, 2, 3, 3), generator=generator)
    expected = torch.distributions.Laplace(mean, 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(likelihood.log_prob(x, mean), expected, atol=1e-4)  # a learned b starts at 0.3 too


def test_its_density_integrates_to_one_and_its_draws_have_its_mean_and_scale() -> None:
    likelihood = LaplaceLikelihood("fixed", 0.2, (1, 1, 1))
    grid = torch.linspace(-6.0, 6.0, 200_001, dtype=torch.float64).view(-1, 1, 1, 1)
    density = likelihood.log_prob(grid, torch.full_like(grid, 0.5)).exp()
    assert torch.trapezoid(density, grid.flatten()).item() == pytest.approx(1.0, abs=1e-6)
    mean = torch.full((200_000, 1, 1, 1), 0.5)
    draws = likelihood.sample(mean, torch.Generator().manual_seed(1))
    assert draws.mean().item() == pytest.approx(0.5, abs=0.003)  # E[x] = mu
    assert (draws - 0.5).abs().mean().item() == pytest.approx(0.2, abs=0.003)  # E|x - mu| = b


def test_a_learned_scale_has_a_floor_and_climbs_back_from_it() -> None:
    likelihood = LaplaceLikelihood("pixel", 1.0, (1, 2, 2))
    x = torch.rand(3, 1, 2, 2)
    with torch.no_grad():
        likelihood.log_scale.fill_(-200.0)
    ceiling = -4 * (MIN_LOG_SCALE + math.log(2.0))  # the density at its mean with the floor scale
    assert torch.all(likelihood.log_prob(x, x) <= ceiling + 1e-3)
    with torch.no_grad():
        likelihood.log_scale.fill_(MIN_LOG_SCALE - 3.0)
    likelihood.log_prob(x, x + 0.5).sum().backward()
    assert likelihood.log_scale.grad is not None and torch.all(likelihood.log_scale.grad > 0)
