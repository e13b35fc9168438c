"""The Rényi bound against independent computations: alpha = 0 is IWAE, alpha = 1 the mean log
weight, one draw is the ELBO for any alpha, and the bound falls as alpha grows."""

from __future__ import annotations

import math

import pytest
import torch
from vaekit_renyi import renyi_bound

from vaekit.objectives import iwae_bound


def log_weights() -> torch.Tensor:
    return torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3  # (K, b)


def test_alpha_zero_is_the_iwae_bound_and_alpha_one_the_mean_log_weight() -> None:
    w = log_weights()
    assert torch.allclose(renyi_bound(w, 0.0), iwae_bound(w))
    assert torch.allclose(renyi_bound(w, 1.0), w.mean(0))
    assert torch.allclose(renyi_bound(w, 1.0 - 1e-7), w.mean(0), atol=1e-5)  # the limit


def test_the_bound_by_its_definition_on_plain_numbers() -> None:
    w, alpha = log_weights(), 0.3
    for item in range(w.shape[1]):
        terms = [math.exp((1 - alpha) * float(v)) for v in w[:, item]]
        assert renyi_bound(w, alpha)[item].item() == pytest.approx(math.log(sum(terms) / len(terms)) / (1 - alpha))


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_one_draw_is_the_elbo_for_any_alpha(alpha: float) -> None:
    w = log_weights()[:1]
    assert torch.allclose(renyi_bound(w, alpha), w[0])


def test_the_bound_falls_as_alpha_grows() -> None:
    w = log_weights()
    bounds = torch.stack([renyi_bound(w, a) for a in (0.0, 0.25, 0.5, 0.75, 1.0)])  # (5, b)
    assert (bounds[:-1] >= bounds[1:] - 1e-12).all()
