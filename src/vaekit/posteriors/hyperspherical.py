"""Hyperspherical latents, the S-VAE (Davidson et al. 2018, "Hyperspherical variational
auto-encoders", https://arxiv.org/abs/1804.00891): q(z|x) = vMF(mu(x), kappa(x)) on the unit sphere
S^(Z-1) under the uniform prior, whose KL has a closed form (vaekit/vmf.py has the math).

A draw uses Wood's rejection sampler on a fixed budget of proposals taken from the noise it is
given (so that a draw is a function of its noise, as every family's is: two processes draw what
one does, and a seeded evaluation repeats): ROUNDS proposals per item, each d standard normals
for the Beta proposal and one for its uniform (through the normal CDF), then d - 1 for the
direction orthogonal to mu. Every proposal is accepted with probability at least 0.65 at any
kappa and dimension (measured), so all ROUNDS fail about once in 10^11 draws; such an item is
drawn again from the generator.

Shapes: B batch, d = Z the ambient dimension, R proposal rounds, (...) leading sample dimensions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vaekit import vmf
from vaekit.distributions import PosteriorDraw
from vaekit.errors import VaekitError
from vaekit.methods import MethodSpec
from vaekit.posteriors.base import PosteriorFamily
from vaekit.priors import Prior, UniformSpherePrior

ROUNDS = 24


def noise_numbers(dim: int) -> int:
    """Standard normal numbers one draw takes on the sphere S^(dim-1)."""
    return ROUNDS * (dim + 1) + dim - 1


class VmfPosterior:
    """vMF(mu, kappa): unit mean directions mu (B, d) and concentrations kappa (B,)."""

    def __init__(self, mu: torch.Tensor, kappa: torch.Tensor) -> None:
        self.mu, self.kappa = mu, kappa
        self.dim = mu.shape[-1]

    def rsample_and_log_prob(
        self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> PosteriorDraw:
        d = self.dim
        if eps is None:
            eps = torch.randn((*self.mu.shape[:-1], noise_numbers(d)), generator=generator, device=self.mu.device)
        draws = eps.shape[:-1]  # (..., B)
        kappa = self.kappa.double().expand(draws)  # (..., B)
        noise = eps.double()
        gaussians = noise[..., : ROUNDS * d].unflatten(-1, (ROUNDS, d))  # (..., B, R, d)
        proposals = (1.0 + gaussians[..., 0] / gaussians.norm(dim=-1)) / 2.0  # Beta((d-1)/2, (d-1)/2), (..., B, R)
        uniforms = torch.special.ndtr(noise[..., ROUNDS * d : ROUNDS * (d + 1)])  # (..., B, R)
        with torch.no_grad():
            b, x0, c = (t.unsqueeze(-1) for t in vmf._proposal_constants(d, kappa))
            w = (1.0 - (1.0 + b) * proposals) / (1.0 - (1.0 - b) * proposals)
            accept = kappa.unsqueeze(-1) * w + (d - 1.0) * torch.log1p(-x0 * w) - c >= torch.log(uniforms)
            first = accept.to(torch.int8).argmax(-1, keepdim=True)  # the first accepted round
            e = proposals.gather(-1, first).squeeze(-1)  # (..., B)
            missed = ~accept.any(-1)
            if missed.any():
                e[missed] = vmf.accepted_proposals(d, kappa[missed], generator)
        w = vmf.w_of(d, e, kappa)  # (..., B): the component along mu, differentiable in kappa
        tangent = noise[..., ROUNDS * (d + 1) :]  # (..., B, d - 1)
        tangent = tangent / tangent.norm(dim=-1, keepdim=True)  # uniform on S^(d-2)
        around_e1 = torch.cat([w.unsqueeze(-1), torch.sqrt((1.0 - w**2).clamp(min=0.0)).unsqueeze(-1) * tangent], -1)
        z = vmf.householder(around_e1, self.mu.double())  # (..., B, d)
        log_q = vmf.log_prob(z, self.mu.double(), kappa)
        correction = vmf.correction_log_ratio(d, e, kappa)
        dtype = self.mu.dtype
        return PosteriorDraw(z.to(dtype), log_q.to(dtype), correction.to(dtype))

    def rsample(self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        return self.rsample_and_log_prob(generator, eps).z

    def mode(self) -> torch.Tensor:
        return self.mu

    def summary(self) -> dict[str, torch.Tensor]:
        return {"mean_direction": self.mu, "concentration": self.kappa.unsqueeze(-1)}

    def kl_to_uniform(self) -> torch.Tensor:
        """KL(vMF(mu, kappa) || uniform on S^(d-1)) per item (B,), in closed form."""
        return vmf.kl_to_uniform(self.dim, self.kappa.double()).to(self.kappa.dtype)


class VmfFamily(PosteriorFamily):
    """--posterior vmf: the encoder gives a direction (normalised to mu) and one number per item
    for kappa = softplus(.) + 1 (at least 1, as in the S-VAE: a kappa near 0 has a KL near 0 and a
    sampler near its slowest); the prior is uniform on the sphere."""

    name = "vmf"
    point_code = "mean_direction"

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        try:
            import scipy.special  # noqa: F401  (log I_v(kappa) comes from it: vmf.py)
        except ImportError:
            raise VaekitError(
                "--posterior vmf needs SciPy for the Bessel functions of its KL: pip install 'vaekit[hyperspherical]'"
            ) from None

    @property
    def encoder_outputs(self) -> int:
        return self.latent_dim + 1

    @property
    def noise_dim(self) -> int:
        return noise_numbers(self.latent_dim)

    def forward(self, params: torch.Tensor) -> VmfPosterior:
        z = self.latent_dim
        direction = F.normalize(params[..., :z], dim=-1)  # (B, d) on the sphere
        kappa = F.softplus(params[..., z]) + 1.0  # (B,)
        return VmfPosterior(direction, kappa)

    def kl(self, posterior: VmfPosterior, draw: PosteriorDraw, log_pz: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return posterior.kl_to_uniform().expand(draw.log_q.shape)  # closed form: no sampling noise

    def own_prior(self) -> Prior:
        return UniformSpherePrior(self.latent_dim)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """Any z is decoded at its direction: draws are already on the sphere, and a traversal,
        an interpolation or a slider position off it is decoded where it points."""
        return F.normalize(z, dim=-1)


def _check(settings: object, config: Any) -> None:
    if config.model.latent_dim < 2:
        raise VaekitError(
            f"--posterior vmf puts z on the sphere S^(Z-1) in R^Z, which needs --latent-dim 2 or more "
            f"(got {config.model.latent_dim})"
        )


SPECS = (
    MethodSpec(
        "vmf",
        "von Mises-Fisher on the unit sphere under a uniform prior (S-VAE), its KL in closed form",
        "https://arxiv.org/abs/1804.00891",
        lambda settings, context: VmfFamily(context.latent_dim),
        needs=frozenset({"latent", "one_layer"}),
        offers=frozenset({"sampled_posterior", "point_code", "own_prior"}),
        figure_note="von Mises-Fisher on the sphere, uniform prior; KL in closed form",
        check=_check,
    ),
)
