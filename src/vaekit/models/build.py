"""Build a model from its config: encoder and decoder family, likelihood, prior, one or two
stochastic layers."""

from __future__ import annotations

import functools
import warnings

from torch import nn

from vaekit.config import ModelConfig
from vaekit.distributions import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
    MixtureOfLogisticsLikelihood,
)
from vaekit.errors import VaekitError
from vaekit.models.code_prior import CodePrior
from vaekit.models.conditional import LabelledDecoder, LabelledEncoder, encoder_input_shape
from vaekit.models.conv import ConvDecoder, ConvEncoder
from vaekit.models.custom import NetworkSpec, build_custom, is_factory_name, untrusted_message
from vaekit.models.ladder import LadderVAE
from vaekit.models.layers import activation
from vaekit.models.mlp import MLPDecoder, MLPEncoder
from vaekit.models.pixelcontext import CONTEXT_FEATURES, PixelContextHead
from vaekit.models.resnet import ResNetDecoder, ResNetEncoder
from vaekit.models.vae import VAE
from vaekit.models.vq import VQVAE, CodeLayout, CodeMapDecoder, CodeMapEncoder
from vaekit.posteriors import GaussianFamily, IafFamily, InverseAutoregressiveFlow, PosteriorFamily, VmfFamily
from vaekit.posteriors.vq import Codebook
from vaekit.priors import MixturePrior, Prior, StandardNormalPrior, UniformSpherePrior, VampPrior


def build_likelihood(config: ModelConfig, image_shape: tuple[int, int, int]) -> Likelihood:
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    if config.likelihood == "continuous-bernoulli":
        return ContinuousBernoulliLikelihood()
    if config.likelihood == "logistic":
        return DiscretizedLogisticLikelihood(config.sigma, image_shape)
    if config.likelihood == "logistic-mixture":
        return MixtureOfLogisticsLikelihood(config.logistic_components, config.sigma)
    return GaussianLikelihood(config.gaussian_variance, config.sigma, image_shape)


def build_family(config: ModelConfig) -> PosteriorFamily:
    """The posterior family `--posterior` names (posteriors/), for a one-layer model."""
    z = config.latent_dim
    if config.posterior == "iaf":
        return IafFamily(z, config.flow_steps, config.flow_hidden, config.flow_context, flow_activation(config))
    if config.posterior == "vmf":
        return VmfFamily(z)
    return GaussianFamily(z)


def flow_activation(config: ModelConfig) -> functools.partial[nn.Module]:
    return functools.partial(activation, config.activation)


def build_model(
    config: ModelConfig, image_shape: tuple[int, int, int], trust_code: bool = False, source: str = "this config"
) -> VAE:
    """The model `config` describes. A user's factory (module:function) is imported only with
    `trust_code`; otherwise the build is refused before anything is imported (`source` names
    where the config came from, for that message)."""
    if is_factory_name(config.architecture) and not trust_code:
        raise VaekitError(untrusted_message(config.architecture, source))
    if config.conditional and config.classes < 2:
        raise VaekitError(
            f"{source} is conditional but names {config.classes} classes: a conditional model needs the number of "
            "classes its labels take (model.classes >= 2; vaekit train sets it from the data)"
        )
    with warnings.catch_warnings():
        # --latent-dim 0 makes zero-size layers (the decoder's first is then just a learned bias);
        # PyTorch warns that initialising them does nothing, which is what is meant.
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return _build(config, image_shape)


def _build(config: ModelConfig, image_shape: tuple[int, int, int]) -> VAE:
    encoder: nn.Module
    decoder: nn.Module
    z, act = config.latent_dim, config.activation
    likelihood = build_likelihood(config, image_shape)
    # The decoder outputs the likelihood's parameters: P per channel and pixel (P = 1 but for mixtures),
    # and with a pixel-context head also the head's feature maps.
    c, h, w = image_shape
    param_channels = c * likelihood.params_per_channel
    pixel_context = None
    if config.pixel_context_layers > 0:
        pixel_context = PixelContextHead(
            c, param_channels, config.pixel_context_channels, config.pixel_context_layers, act
        )
    decoded_shape = (param_channels + (CONTEXT_FEATURES if pixel_context is not None else 0), h, w)
    # A conditional model's networks are built for the label beside their usual input
    # (models/conditional.py): K more encoder inputs, K more decoder inputs beside z.
    classes = config.classes if config.conditional else 0
    flat = config.architecture == "mlp"
    input_shape = encoder_input_shape(image_shape, classes, flat) if classes else image_shape
    decoder_in = z + classes
    if config.posterior == "vq":
        return _build_vq(config, image_shape, likelihood, decoded_shape, pixel_context)
    ladder = config.stochastic_layers == 2
    family = None if ladder else build_family(config)
    # What the encoder emits per item: the family's parameters; a ladder's estimate of z1 and,
    # with flows, their context.
    if family is not None:
        outputs = family.encoder_outputs
    else:
        outputs = 2 * z + (config.flow_context if config.posterior == "iaf" else 0)
    if is_factory_name(config.architecture):
        spec = NetworkSpec(image_shape, z, decoded_shape, outputs)
        encoder, decoder = build_custom(config.architecture, spec)
    elif config.architecture == "mlp":
        encoder = MLPEncoder(input_shape, config.hidden_sizes, outputs, act)
        decoder = MLPDecoder(decoded_shape, config.hidden_sizes, decoder_in, act)
    elif config.architecture == "resnet":
        layout = (config.conv_channels, config.conv_strides, config.kernel_size, config.res_blocks)
        encoder = ResNetEncoder(input_shape, *layout, outputs, act)
        decoder = ResNetDecoder(decoded_shape, *layout, decoder_in, act)
    else:
        layout_conv = (config.conv_channels, config.conv_strides, config.kernel_size)
        encoder = ConvEncoder(input_shape, *layout_conv, outputs, act)
        decoder = ConvDecoder(decoded_shape, *layout_conv, decoder_in, act)
    if classes:
        encoder, decoder = LabelledEncoder(encoder, classes, flat), LabelledDecoder(decoder, classes)
    if family is None:
        # z is the bottom layer z1 here; the ladder adds z2 (config.check allows only N(0, I) above it).
        flow = None
        if config.posterior == "iaf":  # on z2 (models/ladder.py says why not on z1)
            settings = (config.flow_steps, config.flow_hidden, config.flow_context, flow_activation(config))
            flow = InverseAutoregressiveFlow(config.top_latent_dim, *settings)
        return LadderVAE(
            encoder,
            decoder,
            likelihood,
            z,
            config.top_latent_dim,
            config.top_hidden_size,
            image_shape,
            act,
            pixel_context,
            classes,
            flow,
        )
    prior: Prior
    if config.posterior == "vmf":
        prior = UniformSpherePrior(z)
    elif config.prior == "mixture":
        prior = MixturePrior(z, config.prior_components)
    elif config.prior == "vamp":
        prior = VampPrior(image_shape, config.prior_components)
    else:
        prior = StandardNormalPrior(z)
    return VAE(encoder, decoder, likelihood, z, image_shape, prior, pixel_context, classes, family)


def _build_vq(
    config: ModelConfig,
    image_shape: tuple[int, int, int],
    likelihood: Likelihood,
    decoded_shape: tuple[int, int, int],
    pixel_context: PixelContextHead | None,
) -> VQVAE:
    """A VQ-VAE: conv and ResNet networks keep a code map; an MLP or a factory emits --latent-dim
    code vectors of --code-dim numbers each."""
    act, dim = config.activation, config.code_dim
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
    codebook = Codebook(config.codebook_size, dim, config.codebook_update == "ema", config.ema_decay)
    prior = CodePrior(
        config.codebook_size, layout_codes.map_shape, config.code_prior_channels, config.code_prior_layers
    )
    return VQVAE(encoder, decoder, likelihood, layout_codes, codebook, prior, image_shape, pixel_context)
