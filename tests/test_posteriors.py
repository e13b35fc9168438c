"""Posterior families beyond the diagonal Gaussian, against independent computations: the IAF's
log-determinant against autograd's Jacobian, its triangular steps, its density against a direct
change of variables and against quadrature; the vMF posterior's draws against A_d(kappa), its KL
against Monte Carlo, its gradient against the exact derivative; K = 1 IWAE against the ELBO."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.conftest import blob_images
from vaekit import vmf
from vaekit.config import DataConfig, ModelConfig
from vaekit.data.transforms import to_model_input
from vaekit.distributions import DiagonalGaussian
from vaekit.methods import choice
from vaekit.models import build_model
from vaekit.models.vae import VAE
from vaekit.posteriors import FlowPosterior, InverseAutoregressiveFlow, VmfFamily

pytest.importorskip("scipy.special")


def random_flow(latent: int, steps: int, context: int, seed: int = 0) -> InverseAutoregressiveFlow:
    """A flow in float64 with weights large enough that every step is far from the identity."""
    torch.manual_seed(seed)
    flow = InverseAutoregressiveFlow(latent, steps, 16, context, nn.ELU).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.normal_(0.0, 0.6)
    return flow


def jacobian(flow: InverseAutoregressiveFlow, z0: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """dz_T / dz_0 (Z, Z) of one item, by autograd."""
    return torch.autograd.functional.jacobian(lambda z: flow(z[None], context[None])[0][0], z0)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_iaf_log_determinant_equals_autograds_log_abs_det_jacobian(steps: int) -> None:
    flow = random_flow(5, steps, context=3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        z0 = torch.randn(5, generator=generator, dtype=torch.float64)
        context = torch.randn(3, generator=generator, dtype=torch.float64)
        _, log_det = flow(z0[None], context[None])
        exact = torch.linalg.slogdet(jacobian(flow, z0, context)).logabsdet
        assert log_det.item() == pytest.approx(exact.item(), abs=1e-9)


def test_each_iaf_step_is_autoregressive_in_its_own_order() -> None:
    """Step 1 (ascending order): dz_i/dz_j = 0 for j >= i off the diagonal, i.e. lower triangular;
    step 2 reverses the order, so its Jacobian is upper triangular."""
    flow = random_flow(6, 2, context=2)
    z0 = torch.randn(6, dtype=torch.float64)
    context = torch.randn(2, dtype=torch.float64)
    first = torch.autograd.functional.jacobian(lambda z: flow.steps[0](context[None]).call_and_ladj(z[None])[0][0], z0)
    second = torch.autograd.functional.jacobian(lambda z: flow.steps[1](context[None]).call_and_ladj(z[None])[0][0], z0)
    assert torch.equal(first.triu(1), torch.zeros_like(first)) and first.tril(-1).abs().sum() > 0
    assert torch.equal(second.tril(-1), torch.zeros_like(second)) and second.triu(1).abs().sum() > 0
    assert (first.diagonal() > 0).all() and (first.diagonal() < 1).all()  # sigma in (0, 1): the gated update


def test_flow_log_q_equals_the_base_density_over_the_jacobian() -> None:
    """log q(z_T|x) = log N(z_0; mu, sigma^2) - log |det dz_T/dz_0|, the determinant by autograd."""
    flow = random_flow(4, 2, context=3)
    torch.manual_seed(2)
    base = DiagonalGaussian(torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64))
    context = torch.randn(1, 3, dtype=torch.float64)
    posterior = FlowPosterior(base, context, flow)
    eps = torch.randn(1, 4, dtype=torch.float64)
    draw = posterior.rsample_and_log_prob(eps=eps)
    z0 = base.mu + base.std * eps
    direct = base.log_prob(z0) - torch.linalg.slogdet(jacobian(flow, z0[0], context[0])).logabsdet
    assert torch.allclose(flow(z0, context)[0], draw.z)
    assert draw.log_q.item() == pytest.approx(direct.item(), abs=1e-9)


def test_the_flow_posterior_integrates_to_one() -> None:
    """q(z|x) on a grid in 2-D, each point mapped back through the flow (zuko's inverse) and
    weighed by the change of variables: the Riemann sum over the plane is 1."""
    flow = random_flow(2, 2, context=2, seed=3)
    base = DiagonalGaussian(torch.tensor([[0.3, -0.2]], dtype=torch.float64), torch.full((1, 2), -0.5).double())
    context = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    side = torch.linspace(-7.0, 7.0, 561, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)  # (P, 2)
    z0 = grid
    for step in reversed(flow.steps):
        z0 = step(context.expand(len(grid), 2)).inv(z0)
    _, log_det = flow(z0, context.expand(len(grid), 2))
    assert torch.allclose(flow(z0, context.expand(len(grid), 2))[0], grid, atol=1e-8)  # the inverse is exact
    density = torch.exp(base.log_prob(z0) - log_det)  # (P,)
    cell = (side[1] - side[0]) ** 2
    assert (density.sum() * cell).item() == pytest.approx(1.0, abs=2e-3)


def batch(side: int = 12, n: int = 8) -> torch.Tensor:
    return to_model_input(torch.from_numpy(blob_images(n, side=side)[0]), DataConfig())


FAMILY_MODELS = {
    "iaf": (ModelConfig(hidden_sizes=(32,), latent_dim=4), choice("posterior", "iaf", hidden=16, context=5)),
    "iaf-ladder": (
        ModelConfig(hidden_sizes=(32,), latent_dim=5, stochastic_layers=2, top_latent_dim=3, top_hidden_size=16),
        choice("posterior", "iaf"),
    ),
    "iaf-conv": (
        ModelConfig(architecture="conv", conv_channels=(4, 8), latent_dim=3),
        choice("posterior", "iaf", steps=3),
    ),
    "iaf-mixture-prior": (ModelConfig(hidden_sizes=(32,), latent_dim=4), choice("posterior", "iaf")),
}


def family_model(name: str) -> VAE:
    config, posterior = FAMILY_MODELS[name]
    prior = choice("prior", "mixture") if name.endswith("mixture-prior") else None
    return build_model(config, (1, 12, 12), posterior=posterior, prior=prior)


EXACT_K1 = [name for name in FAMILY_MODELS if name != "iaf-ladder"]


@pytest.mark.parametrize("name", EXACT_K1)
def test_iwae_with_one_sample_is_the_flows_elbo(name: str) -> None:
    """With K = 1 the importance weight is the ELBO's integrand: IWAE(K = 1) = ELBO from the same noise."""
    torch.manual_seed(0)
    model = family_model(name)
    x = batch()
    eps = torch.randn((len(x), model.noise_dim), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        elbo = model.elbo(x, eps=eps)
        iwae = model.iwae(x, 1, eps=eps[None])
    assert torch.allclose(iwae.loss, elbo.loss, atol=1e-4)
    assert torch.allclose(iwae.recon_nats, elbo.recon_nats, atol=1e-4)


def test_a_flowed_ladders_elbo_is_its_one_sample_iwae_in_expectation() -> None:
    """On a flowed ladder the ELBO takes z1's KL in closed form given the drawn z2, the importance
    weight its one-sample estimate: equal per draw of z2, and over draws of z1 on average."""
    torch.manual_seed(0)
    model = family_model("iaf-ladder")
    x = batch(n=1).expand(4000, -1, -1, -1)  # one image, 4,000 draws
    eps = torch.randn((len(x), model.noise_dim), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        gap = model.iwae(x, 1, eps=eps[None]).loss - model.elbo(x, eps=eps).loss  # (S,)
    assert gap.mean().item() == pytest.approx(0.0, abs=4 * gap.std().item() / math.sqrt(len(gap)))
    assert gap.abs().max() > 1e-3  # not equal draw by draw: the closed form is not the estimate


def test_under_bf16_autocast_the_flow_density_stays_fp32() -> None:
    torch.manual_seed(0)
    model = family_model("iaf")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        draw = model.encode(batch()).rsample_and_log_prob(generator=torch.Generator().manual_seed(0))
        terms = model.elbo(batch(), generator=torch.Generator().manual_seed(0))
    assert draw.z.dtype == draw.log_q.dtype == terms.kl_nats.dtype == torch.float32


def vmf_posterior(dim: int, kappa: float, items: int = 1):
    family = VmfFamily(dim)
    direction = torch.randn(items, dim, generator=torch.Generator().manual_seed(dim))
    # kappa = softplus(a) + 1: the raw output a that gives the wanted concentration
    raw = torch.full((items, 1), math.log(math.expm1(kappa - 1.0)))
    return family, family(torch.cat([direction, raw], dim=-1).double())


@pytest.mark.parametrize(("dim", "kappa"), [(2, 1.5), (3, 1.2), (5, 10.0), (16, 60.0)])
def test_vmf_draws_have_the_mean_resultant_length_a_d(dim: int, kappa: float) -> None:
    family, posterior = vmf_posterior(dim, kappa)
    noise = torch.randn((40_000, 1, family.noise_dim), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z = posterior.rsample(eps=noise)  # (S, 1, d)
    assert torch.allclose(z.norm(dim=-1), torch.ones(()).double(), atol=1e-9)  # on the sphere
    along = (z * posterior.mu).sum(-1)  # (S, 1)
    expected = vmf.mean_resultant_length(dim, torch.tensor([kappa], dtype=torch.float64)).item()
    error = 4 * along.std().item() / math.sqrt(len(along))
    assert along.mean().item() == pytest.approx(expected, abs=error)


@pytest.mark.parametrize(("dim", "kappa"), [(3, 2.0), (10, 25.0)])
def test_vmf_closed_form_kl_matches_monte_carlo_from_the_posteriors_own_draws(dim: int, kappa: float) -> None:
    family, posterior = vmf_posterior(dim, kappa)
    noise = torch.randn((50_000, 1, family.noise_dim), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    draw = posterior.rsample_and_log_prob(eps=noise)
    log_uniform = -vmf.log_sphere_area(dim)
    monte_carlo = draw.log_q - log_uniform  # (S, 1)
    error = 4 * monte_carlo.std().item() / math.sqrt(len(monte_carlo))
    assert posterior.kl_to_uniform().item() == pytest.approx(monte_carlo.mean().item(), abs=error)


def test_a_vmf_draw_is_a_function_of_its_noise() -> None:
    family, posterior = vmf_posterior(4, 3.0, items=6)
    noise = torch.randn((6, family.noise_dim), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    first = posterior.rsample(generator=torch.Generator().manual_seed(1), eps=noise)
    again = posterior.rsample(generator=torch.Generator().manual_seed(2), eps=noise)
    assert torch.equal(first, again)


def test_vmf_gradient_with_the_correction_is_the_exact_derivative() -> None:
    """d/dkappa E[mu.z] = A_d'(kappa): the reparameterised gradient of the posterior's own draws,
    with Naesseth et al.'s correction added, against autograd through A_d (d = 3, kappa = 1.5;
    without the correction the gradient is more than a quarter low there)."""
    dim, kappa_value = 3, 1.5
    raw = torch.tensor([[math.log(math.expm1(kappa_value - 1.0))]], dtype=torch.float64, requires_grad=True)
    direction = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    family = VmfFamily(dim)
    posterior = family(torch.cat([direction, raw], dim=-1))
    noise = torch.randn((200_000, 1, family.noise_dim), generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    draw = posterior.rsample_and_log_prob(eps=noise)
    value = draw.corrected((draw.z * posterior.mu.detach()).sum(-1))  # (S, 1)
    (gradient,) = torch.autograd.grad(value.mean(), raw)
    kappa = torch.tensor([kappa_value], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(vmf.mean_resultant_length(dim, kappa).sum(), kappa)
    softplus_slope = torch.sigmoid(raw.detach()).item()  # dkappa/draw
    assert gradient.item() == pytest.approx(exact.item() * softplus_slope, rel=0.03)


def test_vmf_model_trains_and_decodes_any_z_at_its_direction() -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(hidden_sizes=(32,), latent_dim=3), (1, 12, 12), posterior=choice("posterior", "vmf")
    )
    x = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = model.elbo(x, generator=generator).loss.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 5
    z = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.allclose(model.decode(z), model.decode(3.0 * z))  # only the direction matters
        samples = model.prior.sample(500, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.allclose(samples.norm(dim=-1), torch.ones(500))
    assert samples.mean(0).abs().max() < 0.1  # uniform on the sphere: no preferred direction


def test_free_bits_floor_a_flowed_layer_by_its_size() -> None:
    """A flow's KL does not split by dimension: free bits floor the flowed layer's batch-mean KL at
    free_bits times its size (the IAF paper's groups), z1's per dimension, and leave the reported
    KL alone."""
    torch.manual_seed(0)
    model = family_model("iaf-ladder")
    x = batch()
    eps = torch.randn((len(x), model.noise_dim), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = model.elbo(x, eps=eps)
        floored = model.elbo(x, eps=eps, free_bits=50.0)  # far above either layer's KL
    sizes = FAMILY_MODELS["iaf-ladder"][0].top_latent_dim + FAMILY_MODELS["iaf-ladder"][0].latent_dim
    assert torch.allclose(floored.loss - floored.recon_nats, torch.full((len(x),), 50.0 * sizes))
    assert torch.allclose(floored.kl_nats, plain.kl_nats) and torch.allclose(plain.loss, plain.nelbo_nats)


def test_the_flows_base_stays_where_a_posterior_under_n01_can_use_it() -> None:
    """The base Gaussian's mean is kept within +-6 and its log-variance at most 2: far outside
    what q(z|x) ever needs under N(0, I), where one stray encoding otherwise became a draw of 1e4."""
    from vaekit.posteriors.iaf import BASE_LOGVAR_MAX, BASE_MEAN_MAX, IafFamily

    family = IafFamily(3, 1, 8, 2, nn.ELU)
    params = torch.tensor([[500.0, -0.5, 2.0, 30.0, -3.0, 1.0, 0.1, 0.2]])  # mu (3), logvar (3), context (2)
    base = family(params).base
    assert base.mu.tolist() == [[BASE_MEAN_MAX, -0.5, 2.0]]
    assert base.logvar.tolist() == [[BASE_LOGVAR_MAX, -3.0, 1.0]]
