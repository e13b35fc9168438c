"""Build a model from its config: encoder and decoder family, likelihood, prior, one or two
stochastic layers."""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from vaekit.config import ModelConfig, RunConfig
from vaekit.data.columns import TableSchema
from vaekit.data.tables import schema_of
from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood, LikelihoodContext
from vaekit.methods import MethodChoice, default_choice
from vaekit.models.conditional import LabelledDecoder, LabelledEncoder, encoder_input_shape
from vaekit.models.conv import ConvDecoder, ConvEncoder
from vaekit.models.custom import NetworkSpec, build_custom, is_factory_name, untrusted_message
from vaekit.models.ladder import LadderVAE
from vaekit.models.layers import activation
from vaekit.models.mlp import MLPDecoder, MLPEncoder
from vaekit.models.pixelcontext import CONTEXT_FEATURES, PixelContextHead
from vaekit.models.resnet import ResNetDecoder, ResNetEncoder
from vaekit.models.vae import VAE
from vaekit.posteriors import PosteriorFamily
from vaekit.posteriors.base import FamilyContext
from vaekit.priors import PriorContext


def build_likelihood(
    likelihood: MethodChoice, image_shape: tuple[int, int, int], table: TableSchema | None = None
) -> Likelihood:
    """The likelihood `likelihood` names (likelihoods/), for images of `image_shape` (a table's
    rows, with its columns' `table` schema)."""
    built: Likelihood = likelihood.spec.build(likelihood.settings, LikelihoodContext(image_shape, table))
    return built


def build_family(config: ModelConfig, posterior: MethodChoice, latent_dim: int) -> PosteriorFamily:
    """The posterior family `posterior` names (posteriors/), for `latent_dim` latents."""
    context = FamilyContext(latent_dim, functools.partial(activation, config.activation), config)
    return posterior.spec.build(posterior.settings, context)


def _ladder_outputs(config: ModelConfig, posterior: MethodChoice) -> int:
    """How many numbers a ladder's encoder gives the top layer's flow: read off a family built
    on a forked random stream, so that the weights drawn next are those of the run as before."""
    with torch.random.fork_rng(devices=[]):
        return build_family(config, posterior, config.top_latent_dim).ladder_parts()[1]


def build_model(
    config: ModelConfig,
    image_shape: tuple[int, int, int],
    trust_code: bool = False,
    source: str = "this config",
    posterior: MethodChoice | None = None,
    prior: MethodChoice | None = None,
    likelihood: MethodChoice | None = None,
    table: TableSchema | None = None,
) -> VAE:
    """The model `config` describes, with the posterior family `posterior`, the prior `prior` and
    the likelihood `likelihood` (by default the Gaussian, N(0, I) and the Bernoulli). A user's
    factory (module:function) is imported only with `trust_code`; otherwise the build is refused
    before anything is imported (`source` names where the config came from, for that message)."""
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
        posterior, prior = posterior or default_choice("posterior"), prior or default_choice("prior")
        return _build(config, image_shape, posterior, prior, likelihood or default_choice("likelihood"), table)


def build_run_model(
    config: RunConfig, image_shape: tuple[int, int, int], trust_code: bool = False, source: str = "this config"
) -> VAE:
    """The model of a whole run: its model section with the run's posterior family, prior and
    likelihood."""
    methods = {"posterior": config.posterior, "prior": config.prior, "likelihood": config.likelihood}
    return build_model(config.model, image_shape, trust_code, source, **methods, table=schema_of(config.data))


def _build(
    config: ModelConfig,
    image_shape: tuple[int, int, int],
    posterior: MethodChoice,
    prior: MethodChoice,
    likelihood_choice: MethodChoice,
    table: TableSchema | None,
) -> VAE:
    z, act = config.latent_dim, config.activation
    likelihood = build_likelihood(likelihood_choice, image_shape, table)
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
    whole_model = posterior.spec.hook("model")
    if whole_model is not None:  # a family that builds its own networks (the VQ-VAE)
        return whole_model(posterior.settings, config, image_shape, likelihood, decoded_shape, pixel_context)
    ladder = config.stochastic_layers == 2
    family = None if ladder else build_family(config, posterior, z)
    # What the encoder emits per item: the family's parameters; a ladder's estimate of z1 and,
    # with a flow on z2, its context.
    outputs = family.encoder_outputs if family is not None else 2 * z + _ladder_outputs(config, posterior)
    encoder, decoder = _networks(config, image_shape, decoded_shape, outputs)
    classes = config.classes if config.conditional else 0
    if family is None:
        # z is the bottom layer z1 here; the ladder adds z2 (config.check allows only N(0, I) above it).
        # A family's flow follows z2 only (models/ladder.py says why not z1).
        flow, _ = build_family(config, posterior, config.top_latent_dim).ladder_parts()
        top = (config.top_latent_dim, config.top_hidden_size)
        return LadderVAE(encoder, decoder, likelihood, z, *top, image_shape, act, pixel_context, classes, flow)
    # a family's own prior (the sphere's) or the one --prior names
    p_z = family.own_prior() or prior.spec.build(prior.settings, PriorContext(z, image_shape))
    return VAE(encoder, decoder, likelihood, z, image_shape, p_z, pixel_context, classes, family)


def _networks(
    config: ModelConfig, image_shape: tuple[int, int, int], decoded_shape: tuple[int, int, int], outputs: int
) -> tuple[nn.Module, nn.Module]:
    """The encoder (x -> `outputs` numbers per item) and the decoder (z -> `decoded_shape`)."""
    encoder: nn.Module
    decoder: nn.Module
    z, act = config.latent_dim, config.activation
    # A conditional model's networks are built for the label beside their usual input
    # (models/conditional.py): K more encoder inputs, K more decoder inputs beside z.
    classes = config.classes if config.conditional else 0
    flat = config.architecture == "mlp"
    input_shape = encoder_input_shape(image_shape, classes, flat) if classes else image_shape
    decoder_in = z + classes
    if is_factory_name(config.architecture):
        encoder, decoder = build_custom(config.architecture, NetworkSpec(image_shape, z, decoded_shape, outputs))
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
    return encoder, decoder
