"""The von Mises-Fisher distribution (vaekit/vmf.py) against independent computations: SciPy's
Bessel functions, quadrature of the density on the 2-sphere, the mean resultant length A_d of its
samples, Monte Carlo KL, and the exact derivative of A_d against the sampler's gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaekit import vmf

scipy_special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("order", [0.0, 0.5, 4.0, 31.0])
@pytest.mark.parametrize("kappa", [0.1, 1.0, 10.0, 100.0])
def test_log_bessel_is_scipys_and_its_gradient_the_bessel_recurrence(order: float, kappa: float) -> None:
    k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
    value = vmf.log_bessel_i(order, k)
    assert float(value.detach()) == pytest.approx(math.log(scipy_special.iv(order, kappa)), rel=1e-10, abs=1e-10)
    (grad,) = torch.autograd.grad(value.sum(), k)
    step = 1e-6 * kappa
    numeric = (math.log(scipy_special.iv(order, kappa + step)) - math.log(scipy_special.iv(order, kappa - step))) / (
        2 * step
    )
    assert float(grad) == pytest.approx(numeric, rel=1e-6)


def test_log_bessel_stays_finite_where_the_bessel_function_overflows_or_underflows() -> None:
    big = vmf.log_bessel_i(0.0, torch.tensor([1e4], dtype=torch.float64))  # I_0(1e4) overflows a double
    assert float(big) == pytest.approx(1e4 - 0.5 * math.log(2 * math.pi * 1e4), rel=1e-8)
    tiny = vmf.log_bessel_i(500.0, torch.tensor([0.1], dtype=torch.float64))  # I_500(0.1) underflows
    series = 500 * math.log(0.05) - math.lgamma(501.0)
    assert float(tiny) == pytest.approx(series, rel=1e-8)


@pytest.mark.parametrize("kappa", [0.1, 2.0, 30.0])
def test_the_normaliser_on_the_2_sphere_equals_quadrature(kappa: float) -> None:
    theta = np.linspace(0.0, math.pi, 200_001)
    integrand = np.exp(kappa * np.cos(theta)) * 2 * math.pi * np.sin(theta)  # the density's mass by latitude
    mass = float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(theta)))
    got = vmf.log_normaliser(3, torch.tensor([kappa], dtype=torch.float64))
    assert float(got) == pytest.approx(-math.log(mass), rel=1e-8)
    # and the textbook closed form C_3 = kappa / (4 pi sinh kappa)
    assert float(got) == pytest.approx(math.log(kappa / (4 * math.pi * math.sinh(kappa))), rel=1e-10)


@pytest.mark.parametrize("dim", [3, 10, 64])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 50.0])
def test_samples_lie_on_the_sphere_with_mean_resultant_length_a_d(dim: int, kappa: float) -> None:
    n = 20_000
    generator = torch.Generator().manual_seed(dim)
    mu = torch.nn.functional.normalize(torch.randn(1, dim, generator=generator, dtype=torch.float64), dim=-1)
    z, _ = vmf.rsample(mu.expand(n, dim), torch.full((n,), kappa, dtype=torch.float64), generator)
    assert torch.allclose(z.norm(dim=-1), torch.ones(n, dtype=torch.float64))
    along = (z * mu).sum(-1)
    expected = float(vmf.mean_resultant_length(dim, torch.tensor([kappa], dtype=torch.float64)))
    assert abs(float(along.mean()) - expected) < 4 * float(along.std()) / math.sqrt(n)
    across = z - along[:, None] * mu  # the part orthogonal to mu: no preferred direction
    assert float(across.mean(0).norm()) < 4 * math.sqrt(float((across**2).sum(-1).mean()) / n)


@pytest.mark.parametrize("dim", [3, 16])
def test_the_kl_to_the_uniform_sphere_equals_its_monte_carlo_estimate(dim: int) -> None:
    n, kappa = 40_000, 8.0
    generator = torch.Generator().manual_seed(3)
    mu = torch.zeros(n, dim, dtype=torch.float64)
    mu[:, 2] = 1.0
    kappas = torch.full((n,), kappa, dtype=torch.float64)
    z, _ = vmf.rsample(mu, kappas, generator)
    log_ratio = vmf.log_prob(z, mu, kappas) + vmf.log_sphere_area(dim)  # log q(z) - log uniform(z)
    exact = float(vmf.kl_to_uniform(dim, kappas[:1]))
    assert abs(float(log_ratio.mean()) - exact) < 4 * float(log_ratio.std()) / math.sqrt(n)
    assert float(vmf.kl_to_uniform(dim, torch.tensor([1e-3], dtype=torch.float64))) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(("dim", "kappa"), [(3, 1.0), (10, 10.0), (64, 100.0)])
def test_the_corrected_sampler_gradient_is_the_derivative_of_a_d(dim: int, kappa: float) -> None:
    """d/dk E[mu.z] = A_d'(k) = 1 - A^2 - (d - 1) A / k; the transform's gradient alone misses it."""
    k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
    kappas = k.expand(100_000)
    e = vmf.accepted_proposals(dim, kappas, torch.Generator().manual_seed(1))
    w = vmf.w_of(dim, e, kappas)
    (corrected,) = torch.autograd.grad(
        vmf.with_correction(w, vmf.correction_log_ratio(dim, e, kappas)).mean(), k, retain_graph=True
    )
    a = float(vmf.mean_resultant_length(dim, k.detach()))
    exact = 1 - a**2 - (dim - 1) / kappa * a
    assert float(corrected) == pytest.approx(exact, rel=0.03)
    with torch.no_grad():  # the correction adds nothing to the value
        value = vmf.with_correction(w, vmf.correction_log_ratio(dim, e, kappas)).mean()
        assert float(value) == pytest.approx(float(w.mean()), rel=1e-12)
    if dim == 3:
        (plain,) = torch.autograd.grad(w.mean(), k)
        assert abs(float(plain) - exact) > 0.1 * exact  # biased without the correction


def test_the_householder_reflection_takes_e1_to_mu() -> None:
    mu = torch.nn.functional.normalize(torch.randn(5, 7, generator=torch.Generator().manual_seed(2)), dim=-1)
    e1 = torch.zeros(5, 7)
    e1[:, 0] = 1.0
    torch.testing.assert_close(vmf.householder(e1, mu), mu)
