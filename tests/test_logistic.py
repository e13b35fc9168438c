"""The discretised logistic likelihood over 8-bit levels, alone and as a per-pixel mixture (issue 6)."""

import math

import pytest
import torch

from tests.conftest import blob_images, train_briefly
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.likelihoods.logistic import (
    DiscretizedLogisticLikelihood,
    MixtureOfLogisticsLikelihood,
    discretized_logistic_log_mass,
)
from vaekit.models import build_run_model
from vaekit.presets import resolve

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
    assert config.likelihood.name == "logistic"


def test_mixture_probabilities_over_all_256_levels_sum_to_one() -> None:
    components = 4
    likelihood = MixtureOfLogisticsLikelihood(components, sigma=0.2)
    generator = torch.Generator().manual_seed(0)
    # Random weights, means and scales for 2 pixels, the same for every one of the 256 levels.
    decoded = (2.0 * torch.randn((1, 3 * components, 1, 2), generator=generator, dtype=torch.float64)).expand(
        256, -1, -1, -1
    )
    x = LEVELS.view(256, 1, 1, 1).expand(256, 1, 1, 2)
    log_p = likelihood.log_prob_per_pixel(x, decoded)  # (256, 1, 1, 2)
    assert torch.isfinite(log_p).all()
    assert log_p.exp().sum(dim=0).flatten().tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_mixture_is_the_weighted_sum_of_its_single_logistics() -> None:
    components = 3
    likelihood = MixtureOfLogisticsLikelihood(components, sigma=0.3)
    decoded = torch.randn((2, 3 * components, 2, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = LEVELS[torch.tensor([[0, 17], [128, 255]])].view(1, 1, 2, 2).expand(2, 1, 2, 2)
    log_weights, means, log_scales = likelihood.split(decoded)
    by_components = sum(
        log_weights[:, m].exp() * discretized_logistic_log_mass(x, means[:, m], log_scales[:, m]).exp()
        for m in range(components)
    )
    assert torch.allclose(likelihood.log_prob_per_pixel(x, decoded).exp(), by_components, rtol=1e-9, atol=0)
    # and E[x|z] is the weighted mean of the component means
    assert torch.allclose(likelihood.mean(decoded), (log_weights.exp() * means).sum(1))


def test_a_mixture_model_trains_on_8_bit_images() -> None:
    config = resolve(
        preset="mlp",
        flags={
            "model": {"hidden_sizes": (64,)},
            "likelihood": {"name": "logistic-mixture", "components": 3},
            "data": {"pixel_range": "symmetric"},
        },
    )
    images, _ = blob_images(256, side=8, seed=0)
    model = build_run_model(config, (1, 8, 8))
    x = to_model_input(torch.from_numpy(images), config.data)
    losses = train_briefly(model, x, steps=60)
    assert math.isfinite(losses[-1]) and losses[-1] < 0.8 * losses[0]
    assert model.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 8, 8)
