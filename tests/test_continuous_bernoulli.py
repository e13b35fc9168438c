"""The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the tutorials' loss made a density
on [0, 1]. Checked against quadrature and against its definition in lambda = sigmoid(logit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaekit.errors import VaekitError
from vaekit.likelihoods.continuous_bernoulli import ContinuousBernoulliLikelihood, continuous_bernoulli_log_norm
from vaekit.presets import resolve

# numpy 2 renamed trapz to trapezoid; pyproject admits numpy 1.24 on.
trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined]

LOGITS = [-30.0, -5.0, -0.5, -0.099, -0.05, 0.0, 1e-4, 0.07, 0.101, 2.0, 30.0]


def density(logit: float, x: np.ndarray) -> np.ndarray:
    """p(x) on a grid of x in [0, 1] through the likelihood itself (one pixel per point), float64."""
    likelihood = ContinuousBernoulliLikelihood()
    values = torch.from_numpy(x).view(-1, 1, 1, 1)
    logits = torch.full_like(values, logit)
    return likelihood.log_prob(values, logits).exp().numpy()


def log_norm_by_definition(logit: float) -> float:
    """log C with C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), C = 2 at lambda = 1/2 (float64)."""
    lam = 1.0 / (1.0 + math.exp(-logit))
    return math.log(2.0) if lam == 0.5 else math.log(2.0 * math.atanh(1.0 - 2.0 * lam) / (1.0 - 2.0 * lam))


@pytest.mark.parametrize("logit", LOGITS)
def test_the_density_integrates_to_one(logit: float) -> None:
    x = np.linspace(0.0, 1.0, 400_001)
    assert trapezoid(density(logit, x), x) == pytest.approx(1.0, abs=1e-6)


def test_the_normaliser_is_its_definition_and_its_series_near_one_half() -> None:
    logits = torch.tensor([-12.0, -3.0, -0.3, -0.1001, -0.0999, -0.02, 0.0, 1e-7, 0.0999, 0.1001, 0.7, 15.0])
    got = continuous_bernoulli_log_norm(logits.double())
    for value, logit in zip(got.tolist(), logits.tolist(), strict=True):
        if abs(logit) > 1e-3:  # the definition itself loses precision as lambda nears 1/2
            assert value == pytest.approx(log_norm_by_definition(logit), abs=1e-9)
        # the series log 2 + l^2/12 - 7 l^4/1440, to within its next term near 1/2
        if abs(logit) < 0.2:
            assert value == pytest.approx(math.log(2) + logit**2 / 12 - 7 * logit**4 / 1440, abs=1e-8)
    # finite, with a finite gradient, exactly at lambda = 1/2 (where the closed form is 0/0)
    at_half = torch.zeros(3, requires_grad=True)
    continuous_bernoulli_log_norm(at_half).sum().backward()
    assert at_half.grad is not None and torch.all(at_half.grad == 0.0)
    # in fp32, smooth across the switch between the two forms
    edge = continuous_bernoulli_log_norm(torch.tensor([0.0999999, 0.1000001]))
    assert abs(edge[0].item() - edge[1].item()) < 1e-6


@pytest.mark.parametrize("logit", LOGITS)
def test_the_mean_is_the_closed_form_and_the_integral(logit: float) -> None:
    mean = ContinuousBernoulliLikelihood().mean(torch.tensor([logit], dtype=torch.float64)).item()
    x = np.linspace(0.0, 1.0, 400_001)
    assert mean == pytest.approx(trapezoid(x * density(logit, x), x), abs=1e-6)
    lam = 1.0 / (1.0 + math.exp(-logit))
    if 1e-2 < abs(logit) < 10:  # lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)): 0/0 at 1/2, atanh(±1) far out
        assert mean == pytest.approx(lam / (2 * lam - 1) + 1 / (2 * math.atanh(1 - 2 * lam)), abs=1e-9)


def test_draws_lie_in_the_unit_interval_with_the_right_mean() -> None:
    likelihood = ContinuousBernoulliLikelihood()
    logits = torch.tensor(LOGITS).view(1, -1, 1, 1).expand(50_000, -1, -1, -1)  # (N, 11, 1, 1)
    draws = likelihood.sample(logits, torch.Generator().manual_seed(0))
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert torch.allclose(draws.mean(0), likelihood.mean(logits[0]), atol=0.005)


def test_it_models_grey_pixels_in_the_unit_range_only() -> None:
    config = resolve(preset="mlp", flags={"model": {"likelihood": "continuous-bernoulli"}})
    assert config.likelihood.name == "continuous-bernoulli"
    with pytest.raises(VaekitError, match="continuous-bernoulli"):
        resolve(preset="mlp", flags={"model": {"likelihood": "continuous-bernoulli"}, "data": {"binarize": True}})
    with pytest.raises(VaekitError, match="continuous-bernoulli"):
        resolve(
            preset="mlp",
            flags={"model": {"likelihood": "continuous-bernoulli"}, "data": {"pixel_range": "symmetric"}},
        )


def test_a_model_with_it_trains_and_its_nats_differ_from_the_cross_entropy_by_the_normaliser() -> None:
    from tests.conftest import blob_images, train_briefly
    from vaekit.config import DataConfig, ModelConfig
    from vaekit.data.transforms import to_model_input
    from vaekit.likelihoods.bernoulli import BernoulliLikelihood
    from vaekit.methods import choice
    from vaekit.models import build_model

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(hidden_sizes=(32,), latent_dim=3),
        (1, 8, 8),
        likelihood=choice("likelihood", "continuous-bernoulli"),
    )
    x = to_model_input(torch.from_numpy(blob_images(64, side=8)[0]), DataConfig())
    losses = train_briefly(model, x, steps=60)
    assert losses[-1] < losses[0] - 20
    logits = model.decode(torch.zeros(64, 3))
    gap = model.likelihood.log_prob(x, logits) - BernoulliLikelihood().log_prob(x, logits)
    assert torch.allclose(gap, continuous_bernoulli_log_norm(logits).flatten(1).sum(1), atol=1e-3)
