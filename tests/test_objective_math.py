"""The objectives' math, each against an independent computation (numpy, a Monte Carlo estimate,
the exact aggregate posterior of a small set, or autograd of the textbook form)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.distributions import DiagonalGaussian, standard_normal_log_prob
from vaekit.models import build_model
from vaekit.objectives import iwae_bound
from vaekit.objectives.annealed import Annealed, capacity_at
from vaekit.objectives.base import StepBatch
from vaekit.objectives.betatc import log_density_matrix, log_weight_matrix, tc_decomposition
from vaekit.objectives.dip import batch_covariance, dip_penalty
from vaekit.objectives.factorvae import Discriminator, FactorVae, permute_dims
from vaekit.objectives.iwae import Miwae, Piwae, ciwae_bound, miwae_bound
from vaekit.objectives.mmd import Wae, kernel_matrix, mmd

# --- beta-TCVAE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_the_three_terms_sum_to_the_one_sample_kl(estimator: str) -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(16, 5, generator=gen), torch.randn(16, 5, generator=gen) * 0.3
    z = DiagonalGaussian(mu, logvar).rsample(gen)
    mi, tc, dwkl = tc_decomposition(z, mu, logvar, torch.arange(16), 1000, estimator)  # type: ignore[arg-type]
    one_sample_kl = DiagonalGaussian(mu, logvar).log_prob(z) - standard_normal_log_prob(z)
    torch.testing.assert_close(mi + tc + dwkl, one_sample_kl)


def test_the_density_matrix_is_each_posteriors_density_per_dimension() -> None:
    gen = torch.Generator().manual_seed(1)
    z, mu, logvar = torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    matrix = log_density_matrix(z, mu, logvar)  # (3, 5, 4)
    expected = torch.distributions.Normal(mu[None], (0.5 * logvar[None]).exp()).log_prob(z[:, None])
    torch.testing.assert_close(matrix, expected)


def test_the_stratified_weights_sum_to_one_and_the_weighted_ones_to_one_over_n() -> None:
    own = torch.arange(8)
    mss = log_weight_matrix(own, 8, 100, "mss").exp()
    mws = log_weight_matrix(own, 8, 100, "mws").exp()
    torch.testing.assert_close(mss.sum(1), torch.ones(8))
    torch.testing.assert_close(mws.sum(1), torch.full((8,), 1 / 100))
    assert torch.allclose(torch.diagonal(mss), torch.full((8,), 1 / 100))


def test_mss_estimates_the_exact_aggregate_posterior_and_mws_sits_log_n_below() -> None:
    """A set of N posteriors whose q(z) = (1/N) sum_n q(z|x_n) is computed exactly; the estimators
    see random batches of G that contain the item whose sample is scored."""
    rng = np.random.default_rng(0)
    n, g, dim = 300, 32, 3
    mu = torch.tensor(rng.normal(size=(n, dim)), dtype=torch.float32)
    logvar = torch.tensor(rng.normal(scale=0.2, size=(n, dim)) - 1.0, dtype=torch.float32)
    z = mu[:1] + (0.5 * logvar[:1]).exp() * torch.tensor(rng.normal(size=(1, dim)), dtype=torch.float32)  # from item 0
    exact = torch.logsumexp(log_density_matrix(z, mu, logvar).sum(-1), dim=1) - math.log(n)  # (1,)
    estimates: dict[str, list[float]] = {"mss": [], "mws": []}
    for _ in range(3000):
        others = rng.choice(np.arange(1, n), size=g - 1, replace=False)
        batch = torch.tensor(np.concatenate([[0], others]))
        per_dim = log_density_matrix(z, mu[batch], logvar[batch])  # (1, G, Z)
        for estimator, values in estimates.items():
            log_w = log_weight_matrix(torch.tensor([0]), g, n, estimator)  # type: ignore[arg-type]
            values.append(float(torch.logsumexp(per_dim.sum(-1) + log_w, dim=1)))
    mss_mean_q = np.mean(np.exp(np.array(estimates["mss"]) - float(exact)))
    assert mss_mean_q == pytest.approx(1.0, abs=0.05)  # unbiased for q(z)
    mws_offset = np.mean(estimates["mws"]) - float(exact)
    assert mws_offset < -0.8 * math.log(n)  # about log N low: the reported terms shift


# --- DIP-VAE -------------------------------------------------------------------------------------


def test_the_batch_covariance_is_numpys_and_the_penalty_its_formula() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4))
    covariance = batch_covariance(torch.tensor(values))
    np.testing.assert_allclose(covariance.numpy(), np.cov(values, rowvar=False, bias=True), rtol=1e-10)
    c = np.cov(values, rowvar=False, bias=True)
    expected = 3.0 * (c**2).sum() - 3.0 * (np.diag(c) ** 2).sum() + 7.0 * ((np.diag(c) - 1) ** 2).sum()
    assert float(dip_penalty(covariance, 3.0, 7.0)) == pytest.approx(expected, rel=1e-10)


def test_dip_ii_covariance_is_the_aggregate_posteriors() -> None:
    """Cov[z] for z from the mixture of the batch's posteriors, by sampling, against
    Cov[mu] + E[diag sigma^2] (the law of total covariance), as DIP-VAE-II penalises it."""
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(20, 3))
    var = rng.uniform(0.1, 0.5, size=(20, 3))
    index = rng.integers(0, 20, size=400_000)
    samples = mu[index] + np.sqrt(var[index]) * rng.normal(size=(400_000, 3))
    formula = batch_covariance(torch.tensor(mu)) + torch.diag(torch.tensor(var).mean(0))
    np.testing.assert_allclose(formula.numpy(), np.cov(samples, rowvar=False), atol=0.01)


# --- MMD -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_the_unbiased_double_sum(kernel: str) -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(7, 3)), rng.normal(loc=0.5, size=(7, 3))
    c = 2.0 * 3 * 0.8**2

    def k(u: np.ndarray, v: np.ndarray) -> float:
        d = float(((u - v) ** 2).sum())
        return c / (c + d) if kernel == "imq" else math.exp(-d / c)

    n = 7
    aa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / (n * n)
    got = mmd(torch.tensor(a), torch.tensor(b), kernel, 0.8)  # type: ignore[arg-type]
    assert float(got) == pytest.approx(aa + bb - 2 * ab, rel=1e-9)
    assert (
        kernel_matrix(torch.tensor(a), torch.tensor(a), kernel, 0.8)
        .diagonal()
        .allclose(torch.ones(7, dtype=torch.float64))
    )  # type: ignore[arg-type]


def test_mmd_is_near_zero_for_one_distribution_and_positive_for_two() -> None:
    gen = torch.Generator().manual_seed(5)
    same = [float(mmd(torch.randn(64, 4, generator=gen), torch.randn(64, 4, generator=gen), "imq")) for _ in range(50)]
    apart = float(mmd(torch.randn(64, 4, generator=gen) + 1.5, torch.randn(64, 4, generator=gen), "imq"))
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(50)  # unbiased: centred on zero
    assert apart > 10 * np.std(same)


def test_the_wae_loss_is_the_reconstruction_at_the_mean_plus_lambda_mmd_and_ignores_the_variance() -> None:
    model = _tiny_model()
    x = (torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(8)) > 0.5).float()
    terms = Wae(lam=10.0, kernel="imq", scale=1.0)(model, _batch(x, seed=3))
    with torch.no_grad():
        mu = model.encode(x).mu
        recon = -model.log_likelihood(x, model.decode(mu))
        reference = torch.randn(10, 3, generator=torch.Generator().manual_seed(3))  # the prior's draws
    a, b, c = mu.double().numpy(), reference.double().numpy(), 2.0 * 3
    k = lambda u, v: c / (c + float(((u - v) ** 2).sum()))  # noqa: E731
    n = len(a)
    within = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    textbook = within - 2 * sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / (n * n)
    torch.testing.assert_close(terms.recon_nats.detach(), recon)
    assert float(terms.extras["mmd"][0].detach()) == pytest.approx(textbook, rel=1e-5)
    assert float(terms.loss.mean()) == pytest.approx(float(recon.mean()) + 10.0 * textbook, rel=1e-5)
    terms.loss.mean().backward()
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]  # 2Z outputs: mu, log-variance
    assert last.weight.grad is not None
    assert last.weight.grad[3:].abs().max() == 0 and last.weight.grad[:3].abs().max() > 0  # the variance is unused


# --- AnnealedVAE ---------------------------------------------------------------------------------


def test_the_capacity_rises_linearly_then_stays() -> None:
    assert [capacity_at(s, 25.0, 100) for s in (0, 50, 100, 500)] == [0.0, 12.5, 25.0, 25.0]


def _batch(x: torch.Tensor, step: int = 0, seed: int = 0) -> StepBatch:
    return StepBatch(x, None, step, 1.0, slice(0, len(x)), len(x), torch.Generator().manual_seed(seed))


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(architecture="mlp", hidden_sizes=(16,), latent_dim=3), (1, 4, 4))


def test_the_annealed_loss_has_the_value_and_gradient_of_gamma_times_the_gap() -> None:
    model = _tiny_model()
    x = (torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    objective = Annealed(gamma=30.0, capacity_max=5.0, steps=10)
    terms = objective(model, _batch(x, step=4))
    loss = terms.loss.mean()
    textbook = terms.recon_nats.mean() + 30.0 * (terms.kl_nats.mean() - 2.0).abs()  # C(4) = 2 nats
    assert float(loss.detach()) == pytest.approx(float(textbook.detach()), rel=1e-6)
    weight = next(model.parameters())
    (by_items,) = torch.autograd.grad(loss, weight, retain_graph=True)
    (by_formula,) = torch.autograd.grad(textbook, weight)
    torch.testing.assert_close(by_items, by_formula)


# --- the importance-weighted family ---------------------------------------------------------------


def test_the_bounds_are_ordered_and_meet_at_their_ends() -> None:
    log_w = torch.randn(12, 5, generator=torch.Generator().manual_seed(7)) * 2  # (M K = 12, b = 5)
    elbo, iwae = log_w.mean(0), iwae_bound(log_w)
    miwae = miwae_bound(log_w, groups=3)  # M = 3 groups of K = 4
    assert torch.all(elbo <= miwae) and torch.all(miwae <= iwae)  # Jensen, for every item
    torch.testing.assert_close(miwae_bound(log_w, groups=1), iwae)
    torch.testing.assert_close(miwae_bound(log_w, groups=12), elbo)
    torch.testing.assert_close(ciwae_bound(log_w, beta=1.0), elbo)
    torch.testing.assert_close(ciwae_bound(log_w, beta=0.0), iwae)


def test_piwae_trains_the_decoder_with_iwae_and_the_encoder_with_miwae() -> None:
    model = _tiny_model(1)
    x = (torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(8)) > 0.5).float()
    groups, samples = 2, 3

    def gradients(loss: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        model.zero_grad()
        loss.sum().backward()
        return (
            [p.grad.clone() for p in model.encoder.parameters()],  # type: ignore[union-attr]
            [p.grad.clone() for p in model.decoder.parameters()],  # type: ignore[union-attr]
        )

    piwae_enc, piwae_dec = gradients(Piwae(groups, samples)(model, _batch(x, seed=9)).loss)
    miwae_enc, _ = gradients(Miwae(groups, samples)(model, _batch(x, seed=9)).loss)
    # IWAE over all M K samples: the same noise, read as one group.
    iwae_loss = Miwae(1, groups * samples)(model, _batch(x, seed=9)).loss
    _, iwae_dec = gradients(iwae_loss)
    for got, want in zip(piwae_enc, miwae_enc, strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(piwae_dec, iwae_dec, strict=True):
        torch.testing.assert_close(got, want)
    value = Piwae(groups, samples)(model, _batch(x, seed=9)).loss
    torch.testing.assert_close(value, iwae_loss)  # the figure PIWAE reports is the IWAE bound


# --- FactorVAE -----------------------------------------------------------------------------------


def test_permuting_each_dimension_keeps_its_values_and_breaks_their_dependence() -> None:
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(4000, generator=gen)
    z = torch.stack([x, x + 0.1 * torch.randn(4000, generator=gen)], dim=1)  # strongly correlated
    permuted = permute_dims(z, torch.Generator().manual_seed(11))
    for j in range(2):
        assert torch.equal(permuted[:, j].sort().values, z[:, j].sort().values)
    assert abs(float(torch.corrcoef(permuted.T)[0, 1])) < 0.05 < float(torch.corrcoef(z.T)[0, 1]) - 0.9


def test_the_discriminators_density_ratio_estimates_a_known_total_correlation() -> None:
    """Trained on q(z) against its permuted batch, E[logit_q - logit_prod] tends to
    TC = KL(q || prod_j q_j); for a 2-d Gaussian with correlation rho, TC = -log(1 - rho^2) / 2."""
    torch.manual_seed(12)
    rho = 0.8
    covariance = torch.tensor([[1.0, rho], [rho, 1.0]])
    z = torch.distributions.MultivariateNormal(torch.zeros(2), covariance).sample((8000,))
    discriminator = Discriminator(2, hidden=64, layers=2)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(13)
    for _ in range(400):
        real, fake = discriminator(z), discriminator(permute_dims(z, gen))
        loss = 0.5 * (
            torch.nn.functional.cross_entropy(real, torch.zeros(len(z), dtype=torch.long))
            + torch.nn.functional.cross_entropy(fake, torch.ones(len(z), dtype=torch.long))
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = discriminator(z)
        estimate = float((logits[:, 0] - logits[:, 1]).mean())
    assert estimate == pytest.approx(-0.5 * math.log(1 - rho**2), rel=0.2)


def test_factorvae_moves_the_vae_by_its_loss_and_the_discriminator_by_its_own() -> None:
    model = _tiny_model(2)
    objective = FactorVae(10.0, Discriminator(3, hidden=8, layers=2))
    x = (torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(14)) > 0.5).float()
    terms = objective(model, _batch(x, seed=15))
    assert terms.auxiliary is not None
    vae_params, own_params = list(model.parameters()), list(objective.module.parameters())
    by_loss = torch.autograd.grad(terms.loss.sum(), vae_params + own_params, retain_graph=True, allow_unused=True)
    by_own = torch.autograd.grad(terms.auxiliary.sum(), vae_params + own_params, allow_unused=True)
    assert all(g is None or not g.any() for g in by_loss[len(vae_params) :])  # D is a constant in the VAE's loss
    assert all(g is None or not g.any() for g in by_own[: len(vae_params)])  # z is a constant in D's
    assert any(g is not None and g.any() for g in by_loss[: len(vae_params)])
    assert all(g is not None and g.any() for g in by_own[len(vae_params) :])
    torch.testing.assert_close(terms.extras["tc_nats"], (terms.loss - terms.recon_nats - terms.kl_nats).detach() / 10.0)
