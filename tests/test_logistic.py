"""The discretised logistic likelihood over 8-bit levels (issue 6)."""

import math

import pytest
import torch

from vaekit.config import resolve
from vaekit.distributions import DiscretizedLogisticLikelihood
from vaekit.errors import VaekitError

LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # every 8-bit value in [-1, 1]


@pytest.mark.parametrize("mean", [-1.3, -0.97, 0.0, 0.42, 1.0])
@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.5, 3.0])
def test_probabilities_over_all_256_levels_sum_to_one(mean: float, sigma: float) -> None:
    likelihood = DiscretizedLogisticLikelihood(sigma, (1, 1, 256)).double()
    x = LEVELS.view(1, 1, 1, 256)
    log_p = likelihood.log_prob_per_pixel(x, torch.full_like(x, mean))
    assert torch.isfinite(log_p).all()
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=2e-3 if sigma < 0.01 else 1e-6)


def test_matches_the_logistic_cdf_by_hand() -> None:
    sigma, mean = 0.3, 0.1
    likelihood = DiscretizedLogisticLikelihood(sigma, (1, 1, 1)).double()
    scale = math.exp(likelihood.log_scale.item())
    value = 140 / 127.5 - 1.0

    def cdf(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-(v - mean) / scale))

    by_hand = math.log(cdf(value + 1 / 255) - cdf(value - 1 / 255))
    got = likelihood.log_prob(torch.tensor([[[[value]]]], dtype=torch.float64), torch.tensor([[[[mean]]]]).double())
    assert got.item() == pytest.approx(by_hand, rel=1e-9)
    # the scale starts where sigma asks: a logistic's standard deviation is scale * pi / sqrt(3)
    assert scale * math.pi / math.sqrt(3) == pytest.approx(sigma)


def test_gradients_are_finite_even_far_from_the_data() -> None:
    likelihood = DiscretizedLogisticLikelihood(0.01, (1, 2, 2))
    mean = torch.tensor([[[[-1.0, 5.0], [0.0, -4.0]]]], requires_grad=True)
    x = torch.tensor([[[[1.0, -1.0], [0.0, 0.5]]]])
    likelihood.log_prob(x, mean).sum().backward()
    assert mean.grad is not None and torch.isfinite(mean.grad).all()
    assert likelihood.log_scale.grad is not None and torch.isfinite(likelihood.log_scale.grad).all()


def test_needs_the_symmetric_pixel_range() -> None:
    with pytest.raises(VaekitError, match="--pixel-range symmetric"):
        resolve(preset="mlp", flags={"model": {"likelihood": "logistic"}})
    config = resolve(preset="mlp", flags={"model": {"likelihood": "logistic"}, "data": {"pixel_range": "symmetric"}})
    assert config.model.likelihood == "logistic"
