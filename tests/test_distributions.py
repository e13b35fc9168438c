import math

import pytest
import torch

from vaekit.distributions import DiagonalGaussian, kl_standard_normal, standard_normal_log_prob
from vaekit.likelihoods.bernoulli import BernoulliLikelihood
from vaekit.likelihoods.gaussian import GaussianLikelihood


def test_kl_closed_form_matches_monte_carlo() -> None:
    generator = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.3, -2.0]], dtype=torch.float64)
    posterior = DiagonalGaussian(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    z = posterior.rsample(generator)  # (S, Z): one sample per row
    monte_carlo = (posterior.log_prob(z) - standard_normal_log_prob(z)).mean()
    closed_form = kl_standard_normal(mu, logvar).sum()
    assert monte_carlo.item() == pytest.approx(closed_form.item(), abs=0.02)


def test_kl_is_zero_only_at_the_prior() -> None:
    assert kl_standard_normal(torch.zeros(4), torch.zeros(4)).abs().max() == 0
    assert (kl_standard_normal(torch.tensor([0.1, 0.0]), torch.tensor([0.0, 0.1])) > 0).all()


def test_rsample_has_the_posterior_moments_and_passes_gradients() -> None:
    mu = torch.full((100_000, 1), 1.5, requires_grad=True)
    logvar = torch.full((100_000, 1), math.log(0.25), requires_grad=True)
    z = DiagonalGaussian(mu, logvar).rsample(torch.Generator().manual_seed(1))
    assert z.mean().item() == pytest.approx(1.5, abs=0.01)
    assert z.std().item() == pytest.approx(0.5, abs=0.01)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    assert torch.all(mu.grad == 1)


def test_rsample_is_reproducible_with_a_generator() -> None:
    posterior = DiagonalGaussian(torch.zeros(3, 5), torch.zeros(3, 5))
    a = posterior.rsample(torch.Generator().manual_seed(7))
    b = posterior.rsample(torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_bernoulli_log_prob_matches_hand_computation() -> None:
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 30.0]]]])  # (1, 1, 2, 2)
    x = torch.tensor([[[[1.0, 0.0], [0.3, 0.0]]]])
    p = [1 / (1 + math.exp(-v)) for v in (2.0, -1.0, 0.0)]
    by_hand = math.log(p[0]) + math.log(1 - p[1]) + (0.3 * math.log(p[2]) + 0.7 * math.log(1 - p[2]))
    # log(1 - sigmoid(30)) = -30 - log(1 + e^-30): the naive form would give -inf in float32.
    by_hand += -30.0 - math.log1p(math.exp(-30.0))
    got = BernoulliLikelihood().log_prob(x, logits)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("variance", ["fixed", "global", "pixel"])
def test_gaussian_log_prob_matches_hand_computation(variance: str) -> None:
    sigma = 0.7
    likelihood = GaussianLikelihood(variance, sigma, (1, 1, 3))
    x = torch.tensor([[[[0.2, 0.5, 1.0]]]])
    mean = torch.tensor([[[[0.0, 0.5, 0.4]]]])
    by_hand = sum(
        -0.5 * math.log(2 * math.pi * sigma**2) - (a - m) ** 2 / (2 * sigma**2)
        for a, m in zip([0.2, 0.5, 1.0], [0.0, 0.5, 0.4], strict=True)
    )
    assert likelihood.log_prob(x, mean).item() == pytest.approx(by_hand, rel=1e-5)
    learned = [p for p in likelihood.parameters()]
    assert len(learned) == (0 if variance == "fixed" else 1)


def test_wild_network_outputs_give_finite_densities_and_kls() -> None:
    from vaekit.distributions import DiagonalGaussian, kl_gaussians

    params = torch.tensor([[0.0, 1.0, -200.0, 200.0]])  # mu (0, 1), logvar (-200, 200): exp overflows in fp32
    q = DiagonalGaussian.from_params(params)
    p = DiagonalGaussian.from_params(torch.tensor([[0.5, 0.0, -150.0, 0.0]]))
    z = q.rsample(torch.Generator().manual_seed(0))
    for value in (q.kl_per_dim(), kl_gaussians(q, p), q.log_prob(z), p.log_prob(z)):
        assert torch.isfinite(value).all(), value


@pytest.mark.parametrize("variance", ["global", "pixel"])
def test_a_learned_gaussian_variance_has_a_floor(variance: str) -> None:
    """On data that sits on a grid the density could grow without limit as the variance shrinks
    (Mattei & Frellsen 2018); the learned log-variance is bounded below by MIN_LOGVAR."""
    from vaekit.likelihoods.gaussian import MIN_LOGVAR

    likelihood = GaussianLikelihood(variance, 1.0, (1, 2, 2))
    x = torch.rand(3, 1, 2, 2)
    with torch.no_grad():
        likelihood.logvar.fill_(-200.0)  # far below any floor
    ceiling = -0.5 * 4 * (MIN_LOGVAR + math.log(2 * math.pi))  # log density at the mean with the floor variance
    assert torch.all(likelihood.log_prob(x, x) <= ceiling + 1e-3)
    with torch.no_grad():
        likelihood.logvar.fill_(math.log(0.3**2))  # well above the floor: the variance is what was set
    expected = torch.full((3,), -0.5 * 4 * (math.log(0.09) + math.log(2 * math.pi)))
    assert torch.allclose(likelihood.log_prob(x, x), expected, atol=1e-4)  # the smooth floor adds ~e^-11 here
    likelihood.logvar.grad = None
    with torch.no_grad():
        likelihood.logvar.fill_(MIN_LOGVAR - 3.0)
    likelihood.log_prob(x, x + 0.5).sum().backward()
    assert likelihood.logvar.grad is not None and torch.all(
        likelihood.logvar.grad > 0
    )  # log p rises with it: it climbs back


def exact_mean(likelihood: torch.nn.Module, params: torch.Tensor) -> torch.Tensor:
    """E[x|z] of a likelihood over the 256 levels of [-1, 1], summed level by level: (C, H, W)."""
    levels = torch.arange(256.0) / 127.5 - 1.0
    per_level = [likelihood.log_prob_per_pixel(torch.full(params[:, :2].shape, v), params).exp() for v in levels]
    return sum(v * mass for v, mass in zip(levels, per_level, strict=True))[0]  # type: ignore[return-value]


def test_each_likelihood_draws_samples_with_its_own_mean() -> None:
    """x ~ p(x|z): over many draws the sample mean is the distribution's mean (Monte Carlo)."""
    from vaekit.likelihoods.logistic import DiscretizedLogisticLikelihood, MixtureOfLogisticsLikelihood

    generator = torch.Generator().manual_seed(0)
    decoded = torch.randn((1, 2, 2, 2), generator=generator) * 0.7  # (1, C=2, H, W): one parameter per pixel
    logistic = DiscretizedLogisticLikelihood(0.2, (2, 2, 2))
    mixture = MixtureOfLogisticsLikelihood(3, 0.2)
    mixture_params = torch.randn((1, 18, 2, 2), generator=generator)  # 3 parameters x 3 components x 2 channels
    cases = [
        (BernoulliLikelihood(), decoded, torch.sigmoid(decoded)[0]),
        (GaussianLikelihood("pixel", 0.3, (2, 2, 2)), decoded, decoded[0]),
        (logistic, decoded.tanh(), exact_mean(logistic, decoded.tanh())),
        (mixture, mixture_params, exact_mean(mixture, mixture_params)),
    ]
    for likelihood, params, mean in cases:
        many = params.expand(40_000, *params.shape[1:])
        draws = likelihood.sample(many, generator)
        assert draws.shape == (40_000, 2, 2, 2)
        assert torch.allclose(draws.mean(0), mean, atol=0.015), type(likelihood).__name__
    levels = logistic.sample(decoded.tanh().expand(100, 2, 2, 2), generator)
    assert torch.allclose((levels + 1) * 127.5, ((levels + 1) * 127.5).round(), atol=1e-4)  # on the 8-bit grid
    assert set(BernoulliLikelihood().sample(decoded.expand(100, 2, 2, 2), generator).unique().tolist()) <= {0.0, 1.0}
