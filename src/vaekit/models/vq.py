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
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from vaekit.distributions import PosteriorDraw
from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood
from vaekit.methods import MethodSpec, setting
from vaekit.models.code_prior import CodePrior
from vaekit.models.conv import ConvDecoder, ConvEncoder
from vaekit.models.custom import NetworkSpec, build_custom, is_factory_name
from vaekit.models.layers import activation
from vaekit.models.mlp import MLPDecoder, MLPEncoder
from vaekit.models.pixelcontext import PixelContextHead
from vaekit.models.resnet import ResNetDecoder, ResNetEncoder
from vaekit.models.vae import VAE, SeparatePart
from vaekit.objectives import KlPart, ModelTerms
from vaekit.objectives.vq import VectorQuantised
from vaekit.posteriors.base import PosteriorFamily
from vaekit.posteriors.vq import Codebook

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

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
    point_code = "codes"

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
    def cannot_sample_because(self) -> str:
        return "" if self.code_prior.trained else UNTRAINED_PRIOR

    def separate_parts(self) -> tuple[SeparatePart, ...]:
        return (SeparatePart(self.code_prior, CODE_PRIOR_FILE, CODE_PRIOR_FORMAT, "prior over codes"),)

    def log_prior(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) (B,) of codes (B, M): the learned prior's once trained, else uniform, -M log K."""
        if self.code_prior.trained:
            return self.code_prior.log_prob(codes)
        return torch.full((len(codes),), -self.layout.count * math.log(self.codebook.size), device=codes.device)

    def terms(
        self,
        x: torch.Tensor,
        posterior: Any,
        samples: int | None = None,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ModelTerms:
        """-log p(x|c) and the rate -log p(c) at the item's codes c: a point mass, so every draw is
        the codes themselves (one decoding, repeated for K draws) and log q = 0."""
        log_px = self.log_likelihood(x, self.decode(posterior.z, y))  # (B,)
        log_pz = self.log_prior(posterior.codes)
        if samples is None:
            rate = KlPart(-log_pz[:, None], (self.layout.count,))  # (B, 1): no free bits (train refuses them)
            return ModelTerms(posterior.z, log_px, lambda: (log_pz, torch.zeros_like(log_px)), (rate,))
        shape = (samples, len(x))
        z = posterior.z.expand(samples, *posterior.z.shape)
        return ModelTerms(z, log_px.expand(shape), lambda: (log_pz.expand(shape), log_px.new_zeros(shape)))

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The vectors (n, M D) of n code maps drawn from the learned prior."""
        if not self.code_prior.trained:
            raise VaekitError(UNTRAINED_PRIOR)
        codes = self.code_prior.sample(n, generator, self.device).flatten(1)  # (n, M)
        return self.layout.flat(self.codebook.codebook[codes])


CodebookUpdate = Literal["ema", "loss"]
# The prior over codes, trained after the autoencoder, beside each checkpoint whose codes it models.
CODE_PRIOR_FILE = "code_prior.safetensors"
CODE_PRIOR_FORMAT = "vaekit-code-prior-1"


@dataclass(frozen=True)
class VqSettings:
    codebook_size: int = setting(512, "vq only: K, how many codes the codebook holds", low=2, high=1 << 20)
    code_dim: int = setting(16, "vq only: D, the size of each code (a code map's channels)", low=1, high=65_536)
    codebook_update: CodebookUpdate = setting(
        "ema", "vq only: ema (moving averages of the vectors each code gets) or loss (the codebook loss)"
    )
    ema_decay: float = setting(0.99, "vq only: the moving averages' decay", above=0, high=1)
    commitment: float = setting(0.25, "vq only: beta, the commitment loss's weight", low=0)
    code_prior_layers: int = setting(
        6, "vq only: masked convolutions of the learned prior over code maps (PixelCNN)", low=1, high=64
    )
    code_prior_channels: int = setting(64, "vq only: channels of the prior's convolutions", low=1, high=4096)


def _check(settings: VqSettings, config: Any) -> None:
    if settings.ema_decay >= 1:
        raise VaekitError(f"--ema-decay {settings.ema_decay} must lie strictly between 0 and 1")
    if config.model.conditional:
        raise VaekitError("--conditional is not supported with --posterior vq: train it unconditional")


def _unused(*args: Any) -> Any:
    raise AssertionError("a VQ-VAE is built whole by its 'model' hook")


def build_vq_model(
    settings: VqSettings,
    config: ModelConfig,
    image_shape: tuple[int, int, int],
    likelihood: Likelihood,
    decoded_shape: tuple[int, int, int],
    pixel_context: PixelContextHead | None,
) -> VQVAE:
    """A VQ-VAE: conv and ResNet networks keep a code map; an MLP or a factory emits --latent-dim
    code vectors of --code-dim numbers each."""
    act, dim = config.activation, settings.code_dim
    encoder: nn.Module
    decoder: nn.Module
    if config.architecture in ("conv", "resnet"):
        if config.architecture == "conv":
            layout_conv = (config.conv_channels, config.conv_strides, config.kernel_size)
            body_encoder: nn.Module = ConvEncoder(image_shape, *layout_conv, 1, act)
            body_decoder: nn.Module = ConvDecoder(decoded_shape, *layout_conv, 1, act)
        else:
            layout = (config.conv_channels, config.conv_strides, config.kernel_size, config.res_blocks)
            body_encoder, body_decoder = (
                ResNetEncoder(image_shape, *layout, 1, act),
                ResNetDecoder(decoded_shape, *layout, 1, act),
            )
        encoder, decoder = CodeMapEncoder(body_encoder, dim), CodeMapDecoder(body_decoder, dim, act)
        layout_codes = CodeLayout(encoder.map_shape, dim, spatial=True)
    else:
        layout_codes = CodeLayout((1, config.latent_dim), dim, spatial=False)
        width = layout_codes.count * dim
        if is_factory_name(config.architecture):
            encoder, decoder = build_custom(config.architecture, NetworkSpec(image_shape, width, decoded_shape, width))
        else:
            encoder = MLPEncoder(image_shape, config.hidden_sizes, width, act)
            decoder = MLPDecoder(decoded_shape, config.hidden_sizes, width, act)
    codebook = Codebook(settings.codebook_size, dim, settings.codebook_update == "ema", settings.ema_decay)
    prior = CodePrior(
        settings.codebook_size, layout_codes.map_shape, settings.code_prior_channels, settings.code_prior_layers
    )
    return VQVAE(encoder, decoder, likelihood, layout_codes, codebook, prior, image_shape, pixel_context)


SPECS = (
    MethodSpec(
        "vq",
        "the nearest of --codebook-size codes (VQ-VAE): a code map for conv networks, --latent-dim code vectors "
        "for an MLP",
        "https://arxiv.org/abs/1711.00937",
        _unused,
        VqSettings,
        needs=frozenset({"latent", "one_layer"}),
        offers=frozenset({"point_code", "discrete_codes", "own_objective", "own_prior", "prior_phase"}),
        figure_note="a point mass on the nearest codes; KL = the rate -log p(codes), IWAE = the ELBO",
        check=_check,
        hooks={
            "model": build_vq_model,
            "objective": lambda settings: VectorQuantised(settings.commitment),
            "prior_phase": "vaekit.training.code_prior:prior_phase",
            "evaluation": "vaekit.metrics.codebook:CODEBOOK",
        },
    ),
)
