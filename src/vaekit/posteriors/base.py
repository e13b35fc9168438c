"""The seam every posterior family plugs into: a family turns the encoder's outputs into q(z|x)
and says what its samples cost; the VAE, the objectives and the metrics only ever ask the
`Posterior` below. The family is a module of the model (a flow's networks are weights like any
other), so checkpoints, bf16 autocast and several processes need nothing of their own.

Shapes: B batch, Z latent, W the encoder's outputs per item, N noise numbers per draw, (...)
leading sample dimensions (K importance samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from vaekit.distributions import PosteriorDraw
from vaekit.priors import Prior


@dataclass(frozen=True)
class FamilyContext:
    """What building a family may read beyond its own settings (methods.MethodSpec.build)."""

    latent_dim: int  # Z of the layer the family is for (a ladder's top layer: its z2)
    activation: Callable[[], nn.Module]  # the networks' hidden activation, for a family's own networks
    model: Any  # the run's ModelConfig


class Posterior(Protocol):
    """q(z|x) for a batch: what every family's posterior answers."""

    def rsample(self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """z ~ q(z|x), (..., B, Z), differentiable in the encoder's outputs; eps (..., B, N) the
        standard normal noise the family's sampler consumes, drawn from `generator` unless given."""
        ...

    def rsample_and_log_prob(
        self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> PosteriorDraw:
        """A draw and its exact log q(z|x) (..., B)."""
        ...

    def mode(self) -> torch.Tensor:
        """The posterior's single point code (B, Z): what maps, traversals and reconstructions use."""
        ...

    def summary(self) -> dict[str, torch.Tensor]:
        """Named per-item arrays (B, ...) that describe q(z|x), for `vaekit encode`."""
        ...


class PosteriorFamily(nn.Module):
    """Builds q(z|x) from the encoder's (B, W) outputs. Subclasses set `name` and say how many
    outputs they read (`encoder_outputs`) and how much noise one draw takes (`noise_dim`)."""

    name: ClassVar[str]
    # Whether posterior.kl_per_dim() against N(0, I) is the exact KL, dimension by dimension
    # (the diagonal Gaussian's): free bits and the per-dimension KL figures need it.
    kl_per_dimension: ClassVar[bool] = False
    # The name of its point code in its posterior's summary() (what `vaekit encode` calls z_<name>)
    point_code: ClassVar[str] = "mean"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    @property
    def encoder_outputs(self) -> int:
        raise NotImplementedError

    @property
    def noise_dim(self) -> int:
        raise NotImplementedError

    def forward(self, params: torch.Tensor) -> Posterior:  # (B, W) -> q(z|x)
        raise NotImplementedError

    def kl(self, posterior: Posterior, draw: PosteriorDraw, log_pz: torch.Tensor) -> torch.Tensor:
        """The ELBO's KL term per item (..., B) at `draw`: by default the one-sample Monte Carlo
        estimate log q(z|x) - log p(z); a family with a closed form against its prior gives that."""
        return draw.log_q - log_pz

    def own_prior(self) -> Prior | None:
        """The prior a family brings with it (the vMF's uniform one on the sphere), or None for
        the one --prior names."""
        return None

    def ladder_parts(self) -> tuple[Any, int]:
        """On top of a ladder: the flow that follows q(z2|x) (or None), a module called as
        `flow(z, context) -> (z, log_det)`, and how many context numbers the encoder gives it
        (models/ladder.py)."""
        return None, 0

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the decoder is given for a latent z (..., Z): z itself, unless the family's latents
        live on a manifold (the sphere), where any z is first mapped onto it."""
        return z
