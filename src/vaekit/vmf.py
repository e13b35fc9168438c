"""The von Mises-Fisher distribution on the unit sphere S^(d-1) in R^d, the posterior of the
hyperspherical VAE (Davidson et al. 2018, "Hyperspherical variational auto-encoders",
https://arxiv.org/abs/1804.00891), as pure functions:

    vMF(x; mu, kappa) = C_d(kappa) exp(kappa mu.x),
    C_d(kappa) = kappa^(d/2 - 1) / ((2 pi)^(d/2) I_(d/2 - 1)(kappa)),

with I_v the modified Bessel function of the first kind. Its mean resultant length is
A_d(kappa) = E[mu.x] = I_(d/2)(kappa) / I_(d/2 - 1)(kappa), and its KL to the uniform distribution
on the sphere is kappa A_d(kappa) + log C_d(kappa) + log |S^(d-1)|.

log I_v(kappa) is computed from SciPy's exponentially scaled `ive` (no overflow at large kappa),
with the small-argument series where `ive` underflows (a large order at a small kappa), and its
derivative I_(v+1)/I_v + v/kappa is given to autograd, so the KL is differentiable in kappa for
any dimension. Samples come from Wood (1994)'s rejection sampler for the component along mu, a
uniform direction orthogonal to it, and a Householder reflection of e1 onto mu; the sample is
differentiable in mu and kappa through the accepted proposal's transform, and its correction term
(Naesseth et al. 2017's reparameterisation of a rejection sampler: the transform's gradient
alone is biased, by a fifth at d = 3, kappa = 1) comes with each sample.

Shapes: B items, d the ambient dimension (the latent size), kappa (B,) or (B, 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def _log_ive_series(order: float, kappa: np.ndarray) -> np.ndarray:
    """log I_v(kappa) - kappa from the leading terms of the series, where `ive` underflows:
    I_v(k) = (k/2)^v / Gamma(v + 1) (1 + (k/2)^2 / (v + 1) + ...)."""
    from scipy.special import gammaln

    half = kappa / 2.0
    correction = np.log1p(half**2 / (order + 1.0) + half**4 / (2.0 * (order + 1.0) * (order + 2.0)))
    return order * np.log(half) - gammaln(order + 1.0) + correction - kappa


def _log_ive(order: float, kappa: np.ndarray) -> np.ndarray:
    """log of SciPy's ive(v, kappa) = I_v(kappa) exp(-kappa), float64, never -inf for kappa > 0."""
    from scipy.special import ive

    scaled = ive(order, kappa)
    with np.errstate(divide="ignore"):
        result = np.log(scaled)
    small = ~np.isfinite(result) | (scaled < 1e-280)
    if small.any():
        result[small] = _log_ive_series(order, kappa[small])
    return result


def _ratio(order: float, kappa: np.ndarray) -> np.ndarray:
    """I_(v+1)(kappa) / I_v(kappa), float64, from the scaled functions (their exp(-kappa) cancels)."""
    return np.exp(_log_ive(order + 1.0, kappa) - _log_ive(order, kappa))


class _LogBessel(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, kappa: torch.Tensor, order: float) -> torch.Tensor:
        values = kappa.detach().double().cpu().numpy()
        ctx.save_for_backward(kappa)
        ctx.order = order
        log_i = _log_ive(order, values) + values
        return torch.from_numpy(log_i).to(device=kappa.device, dtype=kappa.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kappa,) = ctx.saved_tensors
        values = kappa.detach().double().cpu().numpy()
        # d/dk log I_v(k) = I_v'(k) / I_v(k) = I_(v+1)(k) / I_v(k) + v / k
        slope = _ratio(ctx.order, values) + ctx.order / values
        return grad * torch.from_numpy(slope).to(device=kappa.device, dtype=kappa.dtype), None


def log_bessel_i(order: float, kappa: torch.Tensor) -> torch.Tensor:
    """log I_order(kappa) elementwise for kappa > 0, differentiable in kappa."""
    result: torch.Tensor = _LogBessel.apply(kappa, float(order))
    return result


def mean_resultant_length(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_d(kappa) = E[mu.x] = I_(d/2)(kappa) / I_(d/2 - 1)(kappa), differentiable in kappa."""
    order = dim / 2.0 - 1.0
    return torch.exp(log_bessel_i(order + 1.0, kappa) - log_bessel_i(order, kappa))


def log_normaliser(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """log C_d(kappa), the log of the density's constant on S^(d-1)."""
    order = dim / 2.0 - 1.0
    return order * torch.log(kappa) - (dim / 2.0) * math.log(2.0 * math.pi) - log_bessel_i(order, kappa)


def log_sphere_area(dim: int) -> float:
    """log |S^(d-1)| = log(2 pi^(d/2) / Gamma(d/2)): minus the uniform density's log."""
    return math.log(2.0) + (dim / 2.0) * math.log(math.pi) - math.lgamma(dim / 2.0)


def log_prob(x: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log vMF(x; mu, kappa): x and mu (B, d) unit vectors, kappa (B,) -> (B,)."""
    return log_normaliser(x.shape[-1], kappa) + kappa * (mu * x).sum(-1)


def kl_to_uniform(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """KL(vMF(mu, kappa) || uniform on S^(d-1)) in nats, (B,); it does not depend on mu."""
    return kappa * mean_resultant_length(dim, kappa) + log_normaliser(dim, kappa) + log_sphere_area(dim)


def _proposal_constants(dim: int, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wood (1994)'s b, x0 and c for each kappa (B,), written to stay exact at large kappa."""
    m = dim - 1.0
    root = torch.sqrt(4.0 * kappa**2 + m**2)
    b = m / (2.0 * kappa + root)  # = (-2 kappa + root) / m, without the cancellation
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m * torch.log(1.0 - x0**2)
    return b, x0, c


def accepted_proposals(
    dim: int, kappa: torch.Tensor, generator: torch.Generator | None = None, max_rounds: int = 1000
) -> torch.Tensor:
    """Wood's rejection sampler: for each kappa (B,) the accepted proposal e ~ Beta((d-1)/2, (d-1)/2)
    (B,) float64, no gradient; w = w_of(e) is then the vMF sample's component along mu."""
    with torch.no_grad():
        b, x0, c = (t.double() for t in _proposal_constants(dim, kappa.detach()))
        k = kappa.detach().double()
        accepted = torch.full(kappa.shape, float("nan"), dtype=torch.float64, device=kappa.device)
        waiting = torch.ones(kappa.shape, dtype=torch.bool, device=kappa.device)
        for _ in range(max_rounds):
            if not waiting.any():
                return accepted
            proposals = symmetric_beta(dim, kappa.shape, generator, kappa.device)
            w = (1.0 - (1.0 + b) * proposals) / (1.0 - (1.0 - b) * proposals)
            u = torch.rand(kappa.shape, generator=generator, device=kappa.device, dtype=torch.float64)
            accept = k * w + (dim - 1.0) * torch.log1p(-x0 * w) - c >= torch.log(u)
            accepted[waiting & accept] = proposals[waiting & accept]
            waiting &= ~accept
    raise RuntimeError(f"the vMF rejection sampler accepted nothing in {max_rounds} rounds: a vaekit bug")


def w_of(dim: int, e: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """h(e, kappa) = (1 - (1 + b) e) / (1 - (1 - b) e): the proposal's transform, differentiable in kappa."""
    b, _, _ = _proposal_constants(dim, kappa)
    e = e.to(kappa.dtype)
    return (1.0 - (1.0 + b) * e) / (1.0 - (1.0 - b) * e)


def correction_log_ratio(dim: int, e: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log g(h(e, kappa) | kappa) - log r(h(e, kappa) | kappa) up to terms free of kappa, (B,): g the
    density of w = mu.x under the vMF, r the proposal's. Its gradient, times the sampled value of
    whatever is averaged, is Naesseth et al. (2017, eq. 7)'s correction to the reparameterised
    gradient of an expectation under a rejection sampler; without it that gradient is biased."""
    b, _, _ = _proposal_constants(dim, kappa)
    e = e.to(kappa.dtype)
    w = w_of(dim, e, kappa)
    # g(w) = C_d(k) |S^(d-2)| exp(k w) (1 - w^2)^((d-3)/2) on [-1, 1]
    log_target = log_normaliser(dim, kappa) + kappa * w + (dim - 3.0) / 2.0 * torch.log1p(-(w**2))
    # r(h(e)) = s(e) |de/dw| = s(e) (1 - (1 - b) e)^2 / (2 b), with s the Beta density (free of kappa)
    log_proposal = 2.0 * torch.log1p(-(1.0 - b) * e) - torch.log(2.0 * b)
    return log_target - log_proposal


def with_correction(value: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """`value` (B,) unchanged, with the correction term added to its gradient: value + value
    (detached) times (log_ratio - log_ratio detached), whose forward value is exactly `value`."""
    return value + value.detach() * (log_ratio - log_ratio.detach())


def symmetric_beta(
    dim: int, shape: torch.Size, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Beta((d-1)/2, (d-1)/2) draws from a seeded generator: for t the first coordinate of a uniform
    point on S^(d-1) (density proportional to (1 - t^2)^((d-3)/2)), (1 + t) / 2 has that law."""
    g = torch.randn((*shape, dim), generator=generator, device=device, dtype=torch.float64)
    return (1.0 + g[..., 0] / g.norm(dim=-1)) / 2.0


def householder(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Reflect samples z (B, d) taken around e1 onto mean directions mu (B, d)."""
    e1 = torch.zeros_like(mu)
    e1[..., 0] = 1.0
    u = e1 - mu
    u = u / u.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return z - 2.0 * (z * u).sum(-1, keepdim=True) * u


def rsample(
    mu: torch.Tensor, kappa: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """vMF samples (B, d) around unit mean directions mu (B, d) with concentrations kappa (B,),
    differentiable in both, and each sample's `correction_log_ratio` (B,): a loss f(z) averaged
    over samples gets the unbiased gradient as `with_correction(f(z), log_ratio)`."""
    dim = mu.shape[-1]
    e = accepted_proposals(dim, kappa, generator)  # (B,)
    w = w_of(dim, e, kappa)  # (B,)
    v = torch.randn((*mu.shape[:-1], dim - 1), generator=generator, device=mu.device, dtype=mu.dtype)
    v = v / v.norm(dim=-1, keepdim=True)  # (B, d - 1): uniform on S^(d-2), orthogonal to e1
    z = torch.cat([w.unsqueeze(-1), torch.sqrt((1.0 - w**2).clamp(min=0.0)).unsqueeze(-1) * v], dim=-1)
    return householder(z, mu), correction_log_ratio(dim, e, kappa)
