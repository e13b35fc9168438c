"""The VAE: an encoder giving q(z|x), a decoder giving p(x|z), and the N(0, I) prior.

Shapes: B batch, (C, H, W) image, Z latent. The encoder returns (B, 2Z) = [mu, logvar]; the
decoder returns (B, C, H, W) likelihood parameters (logits for Bernoulli, means for Gaussian).
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.distributions import (
    BernoulliLikelihood,
    DiagonalGaussian,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    Likelihood,
    MixtureOfLogisticsLikelihood,
)
from vaekit.models.conv import ConvDecoder, ConvEncoder
from vaekit.models.mlp import MLPDecoder, MLPEncoder
from vaekit.models.resnet import ResNetDecoder, ResNetEncoder
from vaekit.objectives import ElboTerms, elbo_terms, iwae_bound, log_importance_weights
from vaekit.priors import MixturePrior, Prior, StandardNormalPrior, VampPrior, monte_carlo_kl


class VAE(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        prior: Prior | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        self.latent_dim = latent_dim
        self.image_shape = image_shape
        # oneDNN's convolutions run faster on channels-last (NHWC) tensors, in fp32 and more so
        # in bf16 (benchmarks/suite.py); an MLP flattens its input and gains nothing.
        self.channels_last = isinstance(encoder, ConvEncoder | ResNetEncoder)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        # float(): under bf16 autocast only the network runs in bf16; the distributions, the KL
        # and the likelihood are computed in fp32.
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # same shape, NHWC strides
        return DiagonalGaussian.from_params(self.encoder(x).float())  # (B, C, H, W) -> (B, Z) x 2

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).float()  # (B, Z) -> (B, C, H, W)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return self.likelihood.log_prob(x, decoded)  # (B,)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in model scale, for pictures."""
        return self.likelihood.mean(decoded)

    def elbo(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> ElboTerms:
        """Per-image ELBO terms; eps (B, Z) is the reparameterisation noise, drawn from `generator`
        unless given."""
        posterior = self.encode(x)
        z = posterior.rsample(generator, eps)  # (B, Z)
        log_px = self.log_likelihood(x, self.decode(z))
        if self.prior.closed_form_kl:
            return elbo_terms(log_px, posterior.kl_per_dim(), beta, free_bits)
        kl = monte_carlo_kl(posterior.log_prob(z), self.prior.log_prob(z, self.encode))  # (B,), no closed form
        return ElboTerms(loss=-log_px + beta * kl, recon_nats=-log_px, kl_nats=kl)

    def log_weights(
        self,
        x: torch.Tensor,
        posterior: DiagonalGaussian,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K importance samples z_k ~ q(z|x): log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) and
        log p(x|z_k), both (K, B). eps (K, B, Z) is drawn from `generator` unless given."""
        batch = x.shape[0]
        if eps is None:
            eps = torch.randn((k, *posterior.mu.shape), generator=generator, device=x.device, dtype=posterior.mu.dtype)
        z = posterior.mu + posterior.std * eps  # (K, B, Z)
        decoded = self.decode(z.flatten(0, 1))  # (K * B, C, H, W)
        x_rep = x.expand(k, *x.shape).flatten(0, 1)  # (K * B, C, H, W), a view
        log_px = self.log_likelihood(x_rep, decoded).view(k, batch)  # (K, B)
        return log_importance_weights(log_px, self.prior.log_prob(z, self.encode), posterior.log_prob(z)), log_px

    def iwae(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> ElboTerms:
        """The importance-weighted objective (Burda et al. 2016): loss = -log (1/K) sum_k w_k per image.

        recon_nats and kl_nats are the ELBO's parts from the same samples (the K-sample average of
        -log p(x|z) and the closed-form KL), reported beside the loss; K = 1 is the ELBO itself.
        """
        posterior = self.encode(x)
        log_w, log_px = self.log_weights(x, posterior, k, generator, eps)
        # KL part: closed form when there is one, else the K-sample mean of log q - log p.
        kl = posterior.kl_per_dim().sum(-1) if self.prior.closed_form_kl else (log_px - log_w).mean(0)
        return ElboTerms(loss=-iwae_bound(log_w), recon_nats=-log_px.mean(0), kl_nats=kl)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images E[x|z] with z from the prior, (n, C, H, W)."""
        return self.mean_image(self.decode(self.prior.sample(n, generator, self.device, self.encode)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] at the posterior mean z = mu(x), (B, C, H, W)."""
        return self.mean_image(self.decode(self.encode(x).mode()))


def build_likelihood(config: ModelConfig, image_shape: tuple[int, int, int]) -> Likelihood:
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    if config.likelihood == "logistic":
        return DiscretizedLogisticLikelihood(config.sigma, image_shape)
    if config.likelihood == "logistic-mixture":
        return MixtureOfLogisticsLikelihood(config.logistic_components, config.sigma)
    return GaussianLikelihood(config.gaussian_variance, config.sigma, image_shape)


def build_model(config: ModelConfig, image_shape: tuple[int, int, int]) -> VAE:
    encoder: nn.Module
    decoder: nn.Module
    z, act = config.latent_dim, config.activation
    likelihood = build_likelihood(config, image_shape)
    # The decoder outputs the likelihood's parameters: P per channel and pixel (P = 1 but for mixtures).
    c, h, w = image_shape
    decoded_shape = (c * getattr(likelihood, "params_per_channel", 1), h, w)
    if config.architecture == "mlp":
        encoder = MLPEncoder(image_shape, config.hidden_sizes, z, act)
        decoder = MLPDecoder(decoded_shape, config.hidden_sizes, z, act)
    elif config.architecture == "resnet":
        layout = (config.conv_channels, config.conv_strides, config.kernel_size, config.res_blocks)
        encoder = ResNetEncoder(image_shape, *layout, z, act)
        decoder = ResNetDecoder(decoded_shape, *layout, z, act)
    else:
        layout_conv = (config.conv_channels, config.conv_strides, config.kernel_size)
        encoder = ConvEncoder(image_shape, *layout_conv, z, act)
        decoder = ConvDecoder(decoded_shape, *layout_conv, z, act)
    prior: Prior
    if config.prior == "mixture":
        prior = MixturePrior(z, config.prior_components)
    elif config.prior == "vamp":
        prior = VampPrior(image_shape, config.prior_components)
    else:
        prior = StandardNormalPrior(z)
    return VAE(encoder, decoder, likelihood, z, image_shape, prior)
