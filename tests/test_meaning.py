"""What a figure is (metrics/meaning.py): a likelihood only where the model is normalised over
the data's values, bits/dim only then, and the dequantisation bound for densities."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.likelihoods.gaussian import GaussianLikelihood
from vaekit.methods import choice
from vaekit.metrics.meaning import figure_meaning
from vaekit.models.build import build_likelihood
from vaekit.presets import resolve


@pytest.mark.parametrize(
    ("likelihood", "data", "kind"),
    [
        ("bernoulli", DataConfig(), "cross-entropy"),
        ("bernoulli", DataConfig(binarize=True), "likelihood"),
        ("logistic", DataConfig(pixel_range="symmetric"), "likelihood"),
        ("logistic-mixture", DataConfig(pixel_range="symmetric"), "likelihood"),
        ("gaussian", DataConfig(), "density"),
        ("gaussian", DataConfig(dequantize=True), "dequantized-density"),
        ("continuous-bernoulli", DataConfig(), "density"),
        ("continuous-bernoulli", DataConfig(dequantize=True), "dequantized-density"),
    ],
)
def test_each_likelihood_and_data_get_their_figure(likelihood: str, data: DataConfig, kind: str) -> None:
    meaning = figure_meaning(build_likelihood(choice("likelihood", likelihood), (1, 4, 4)), data)
    assert meaning.kind == kind
    honest = kind in ("likelihood", "dequantized-density")
    assert (meaning.bits_per_dim(100.0, 16) is not None) == honest
    assert (meaning.advice is None) == honest  # training says how to get a likelihood where there is none
    if kind == "likelihood":
        assert meaning.bits_per_dim(100.0, 16) == pytest.approx(100.0 / (16 * math.log(2)))


def test_dequantised_pixels_fill_their_bins() -> None:
    levels = torch.arange(256, dtype=torch.uint8).repeat(200)
    x = to_model_input(levels, DataConfig(dequantize=True), torch.Generator().manual_seed(0))
    assert torch.all(x >= levels / 256) and torch.all(x < (levels.double() + 1) / 256)
    spread = x - levels / 256
    assert spread.min() < 0.001 / 256 and spread.max() > 0.999 / 256  # the whole bin, not its centre
    symmetric = to_model_input(levels, DataConfig(dequantize=True, pixel_range="symmetric"))
    assert symmetric.min() >= -1.0 and symmetric.max() < 1.0


@pytest.mark.parametrize(("mean", "sigma"), [(0.5, 0.1), (0.2, 0.02), (0.9, 0.005)])
def test_the_dequantised_density_bounds_the_probability_of_each_level(mean: float, sigma: float) -> None:
    """-log P(k) <= E_u[-log p((k + u) / 256)] - log(1/256) for a Gaussian pixel, with P(k) its exact
    mass in the bin; and the bits/dim vaekit reports are that bound."""
    likelihood = GaussianLikelihood("fixed", sigma, (1, 1, 1))
    data = DataConfig(dequantize=True)
    meaning = figure_meaning(likelihood, data)
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), sigma)
    generator = torch.Generator().manual_seed(0)
    for k in (int(mean * 255) - 3, int(mean * 255), int(mean * 255) + 2):
        exact = -math.log(float(normal.cdf(torch.tensor((k + 1) / 256)) - normal.cdf(torch.tensor(k / 256))))
        pixels = torch.full((20_000, 1, 1, 1), k, dtype=torch.uint8)
        x = to_model_input(pixels, data, generator)
        density_nats = -likelihood.log_prob(x, torch.full_like(x, mean)).double().mean().item()
        bound_bits = meaning.bits_per_dim(density_nats, 1)
        assert bound_bits is not None
        assert bound_bits * math.log(2) >= exact - 0.01  # a bound (up to Monte Carlo noise)
        assert bound_bits * math.log(2) == pytest.approx(density_nats + math.log(256))
        if sigma >= 0.02:  # wide compared with a bin: the density is nearly flat in it, the bound tight
            assert bound_bits * math.log(2) < exact + 0.05


def test_dequantisation_is_for_continuous_likelihoods_only() -> None:
    with pytest.raises(VaekitError, match="--dequantize is for continuous likelihoods"):
        resolve(preset="mlp", flags={"data": {"dequantize": True}})
    with pytest.raises(VaekitError, match="exclude each other"):
        resolve(preset="mlp", flags={"data": {"dequantize": True, "binarize": True}})
    config = resolve(preset="conv-small", flags={"data": {"dequantize": True}})
    assert config.data.dequantize and config.likelihood.name == "gaussian"
