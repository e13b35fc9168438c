"""The VQ-VAE (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937): an encoder's M vectors
per item quantised to a codebook (posteriors/vq.py), the decoder run on the chosen codes, and a
prior over the codes that is uniform until one is learned (models/code_prior.py).

Conv and ResNet networks keep their spatial layout: the encoder's last feature map becomes a map
of D-channel code vectors (a 1x1 convolution in place of the linear head), and the decoder starts
from such a map. An MLP emits M code vectors of size D. Either way the decoder's input is the
codes' vectors flattened, z (B, M D), so every part of vaekit that decodes a latent vector works.

Figures: q(z|x) is a point mass on the codes c(x), so -ELBO = -log p(x|c) - log p(c), whose KL
part is the rate -log p(c) (M log K under the uniform prior). Every importance weight is the same
number, so the IWAE estimate is the ELBO itself.

Shapes: B batch, M code vectors per item (h w positions of a map), D code size, K codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.distributions import Likelihood, PosteriorDraw
from vaekit.errors import VaekitError
from vaekit.models.code_prior import CodePrior
from vaekit.models.layers import activation
from vaekit.models.pixelcontext import PixelContextHead
from vaekit.models.vae import VAE, WeightedDraws
from vaekit.objectives import ElboTerms
from vaekit.posteriors.base import PosteriorFamily
from vaekit.posteriors.vq import Codebook

UNTRAINED_PRIOR = (
    "this VQ-VAE's prior over its codes has not been trained, so it cannot generate: train one with "
    "`vaekit train-prior --run RUN` (or --prior-epochs N when training)"
)


@dataclass(frozen=True)
class CodeLayout:
    """M code vectors of size D per item: a (h, w) map for conv networks (`spatial`), 1 x M for an MLP."""

    map_shape: tuple[int, int]
    dim: int
    spatial: bool

    @property
    def count(self) -> int:
        return self.map_shape[0] * self.map_shape[1]

    def vectors(self, flat: torch.Tensor) -> torch.Tensor:
        """(..., M D) in the networks' layout (a map is channel-major) -> (..., M, D)."""
        if self.spatial:
            return flat.unflatten(-1, (self.dim, self.count)).transpose(-1, -2)
        return flat.unflatten(-1, (self.count, self.dim))

    def flat(self, vectors: torch.Tensor) -> torch.Tensor:
        """(..., M, D) -> (..., M D), the inverse of `vectors`."""
        return (vectors.transpose(-1, -2) if self.spatial else vectors).flatten(-2)


class CodePosterior:
    """q(z|x): a point mass on each item's codes (B, M). `z` (B, M D) is the straight-through copy
    of the codes' vectors (their value, the encoder's gradient); `z_e` and `z_q` (B, M, D) are the
    encoder's vectors and the codes' own, for the commitment and codebook losses."""

    def __init__(self, codes: torch.Tensor, z_e: torch.Tensor, z_q: torch.Tensor, z: torch.Tensor) -> None:
        self.codes, self.z_e, self.z_q, self.z = codes, z_e, z_q, z

    def rsample(self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        return self.z if eps is None else self.z.expand(*eps.shape[:-1], self.z.shape[-1])

    def rsample_and_log_prob(
        self, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> PosteriorDraw:
        z = self.rsample(generator, eps)
        return PosteriorDraw(z, z.new_zeros(z.shape[:-1]))  # log 1: all of q's mass on one point

    def mode(self) -> torch.Tensor:
        return self.z

    @property
    def mu(self) -> torch.Tensor:
        return self.z

    def summary(self) -> dict[str, torch.Tensor]:
        return {"codes": self.codes}  # (B, M) code indices, in raster order for a map


class VqFamily(PosteriorFamily):
    """--posterior vq: the encoder's M D outputs quantised to the codebook."""

    name = "vq"

    def __init__(self, layout: CodeLayout, codebook: Codebook) -> None:
        super().__init__(layout.count * layout.dim)
        self.layout, self.codebook = layout, codebook

    @property
    def encoder_outputs(self) -> int:
        return self.latent_dim

    @property
    def noise_dim(self) -> int:
        return 0  # deterministic

    def forward(self, params: torch.Tensor) -> CodePosterior:
        z_e = self.layout.vectors(params)  # (B, M, D)
        quantised = self.codebook.quantise(z_e.flatten(0, 1))
        codes = quantised.codes.view(z_e.shape[:-1])  # (B, M)
        z_q = quantised.z_q.view(z_e.shape)
        return CodePosterior(codes, z_e, z_q, self.layout.flat(quantised.straight_through.view(z_e.shape)))


class CodeMapEncoder(nn.Module):
    """A conv or ResNet encoder's body, then a 1x1 convolution to D channels: x -> a code map
    (B, D, h, w), flattened channel-major to (B, D h w)."""

    prefers_channels_last = True

    def __init__(self, encoder: nn.Module, code_dim: int) -> None:
        super().__init__()
        channels, height, width = encoder.feature_shape  # type: ignore[misc]  # ConvEncoder's or ResNetEncoder's
        self.map_shape = (height, width)
        self.body: nn.Module = encoder.body  # type: ignore[assignment]
        self.head = nn.Conv2d(channels, code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).flatten(1)  # (B, C, H, W) -> (B, D, h, w) -> (B, D h w)


class CodeMapDecoder(nn.Module):
    """The mirror: a code map (B, D h w) -> a 1x1 convolution to the decoder body's channels -> its body."""

    def __init__(self, decoder: nn.Module, code_dim: int, act: str) -> None:
        super().__init__()
        channels, height, width = decoder.feature_shape  # type: ignore[misc]  # ConvDecoder's or ResNetDecoder's
        self.map_shape = (code_dim, height, width)
        self.project = nn.Sequential(nn.Conv2d(code_dim, channels, 1), activation(act))
        self.body: nn.Module = decoder.body  # type: ignore[assignment]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z.unflatten(1, self.map_shape)))  # -> (B, P, H, W)


class VQVAE(VAE):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        layout: CodeLayout,
        codebook: Codebook,
        code_prior: CodePrior,
        image_shape: tuple[int, int, int],
        pixel_context: PixelContextHead | None = None,
    ) -> None:
        family = VqFamily(layout, codebook)
        super().__init__(encoder, decoder, likelihood, family.latent_dim, image_shape, None, pixel_context, 0, family)
        self.layout = layout
        self.code_prior = code_prior
        # Trained after the autoencoder (`vaekit train-prior`): no gradient reaches it before, so
        # the autoencoder's optimiser and DistributedDataParallel leave it alone.
        self.code_prior.requires_grad_(False)

    @property
    def codebook(self) -> Codebook:
        return self.family.codebook  # type: ignore[return-value]  # one module, one set of checkpoint keys

    @property
    def can_sample(self) -> bool:
        return self.code_prior.trained

    def log_prior(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) (B,) of codes (B, M): the learned prior's once trained, else uniform, -M log K."""
        if self.code_prior.trained:
            return self.code_prior.log_prob(codes)
        return torch.full((len(codes),), -self.layout.count * math.log(self.codebook.size), device=codes.device)

    def elbo(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        kl_batch_mean: Any = None,
        y: torch.Tensor | None = None,
    ) -> ElboTerms:
        """-log p(x|c) and the rate -log p(c) at the item's codes c (a point mass: no sampling)."""
        posterior = self.encode(x, y)
        log_px = self.log_likelihood(x, self.decode(posterior.z, y))
        rate = -self.log_prior(posterior.codes)
        return ElboTerms(loss=-log_px + beta * rate, recon_nats=-log_px, kl_nats=rate)

    def weighted_draws(
        self,
        x: torch.Tensor,
        posterior: Any,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> WeightedDraws:
        """All K draws are the codes themselves: one decoding, its weight repeated K times."""
        log_px = self.log_likelihood(x, self.decode(posterior.z, y)).expand(k, len(x))  # (K, B)
        log_pz = self.log_prior(posterior.codes).expand(k, len(x))
        return WeightedDraws(log_px + log_pz, log_px, log_pz, None)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The vectors (n, M D) of n code maps drawn from the learned prior."""
        if not self.code_prior.trained:
            raise VaekitError(UNTRAINED_PRIOR)
        codes = self.code_prior.sample(n, generator, self.device).flatten(1)  # (n, M)
        return self.layout.flat(self.codebook.codebook[codes])
