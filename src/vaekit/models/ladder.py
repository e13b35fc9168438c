"""A VAE with two stochastic layers and ladder-style top-down inference (Sønderby et al. 2016,
https://arxiv.org/abs/1602.02282).

Generative model: z2 ~ N(0, I), z1 ~ p(z1|z2) = N(mu_p(z2), var_p(z2)), x ~ p(x|z1).
Inference: the bottom-up pass gives an estimate N(mu_hat, var_hat) of z1 from x and, from that,
q(z2|x); the top-down pass then combines the estimate with the generative p(z1|z2) by precision
weighting, so q(z1|x, z2) and p(z1|z2) share the top-down network. Both KL terms are closed forms
between Gaussians; the IWAE weights use the joint densities of (z1, z2).

Shapes: B batch, Z1 bottom latent, Z2 top latent. The encoder and decoder are the usual families
(mlp, conv, resnet) around z1; z2 is the "latent space" the pictures and maps show.
"""

from __future__ import annotations

import torch
from torch import nn

from vaekit.distributions import DiagonalGaussian, Likelihood, kl_gaussians, standard_normal_log_prob
from vaekit.errors import VaekitError
from vaekit.models.layers import activation
from vaekit.models.pixelcontext import PixelContextHead
from vaekit.models.vae import VAE, repeat_labels
from vaekit.objectives import BatchMean, ElboTerms, elbo_terms, log_importance_weights


class LadderPosterior(DiagonalGaussian):
    """q(z2|x), carrying the bottom-up estimate of z1 the top-down pass needs."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, bottom_up: DiagonalGaussian) -> None:
        super().__init__(mu, logvar)
        self.bottom_up = bottom_up


def precision_weighted(a: DiagonalGaussian, b: DiagonalGaussian) -> DiagonalGaussian:
    """The normalised product of two diagonal Gaussians: precisions add, means are averaged by
    precision. Computed in log space: logvar = -log(exp(-lv_a) + exp(-lv_b))."""
    logvar = -torch.logaddexp(-a.logvar, -b.logvar)
    mu = a.mu * torch.exp(logvar - a.logvar) + b.mu * torch.exp(logvar - b.logvar)
    return DiagonalGaussian(mu, logvar)


def _mlp(widths: list[int], act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class LadderVAE(VAE):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        bottom_dim: int,
        top_dim: int,
        hidden: int,
        image_shape: tuple[int, int, int],
        act: str,
        pixel_context: PixelContextHead | None = None,
        classes: int = 0,
    ) -> None:
        # A conditional ladder takes the label in the bottom-up encoder and the decoder of x;
        # p(z1|z2) stays label-free, like the prior of a one-layer conditional VAE.
        super().__init__(
            encoder, decoder, likelihood, top_dim, image_shape, pixel_context=pixel_context, classes=classes
        )
        self.bottom_dim = bottom_dim
        self.noise_dim = top_dim + bottom_dim  # eps = [eps2, eps1]
        self.up = _mlp([2 * bottom_dim, hidden, hidden, 2 * top_dim], act)  # (mu_hat, logvar_hat) -> q(z2|x)
        self.down = _mlp([top_dim, hidden, hidden, 2 * bottom_dim], act)  # z2 -> p(z1|z2)

    @property
    def closed_form_kl(self) -> bool:
        # encode(x) is q(z2|x) only and the z1 term depends on the sampled z2, so VAE.iwae reports
        # the K-sample KL estimate from this class's joint log-weights.
        return False

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LadderPosterior:
        bottom_up = super().encode(x, y)  # (B, Z1) x 2: the encoder's estimate of z1
        # float(): under bf16 autocast only the networks run in bf16 (as in VAE.encode)
        top = DiagonalGaussian.from_params(self.up(torch.cat([bottom_up.mu, bottom_up.logvar], dim=-1)).float())
        return LadderPosterior(top.mu, top.logvar, bottom_up)

    def top_down(self, z2: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(self.down(z2).float())  # (..., Z2) -> (..., Z1) x 2

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z2 (B, Z2) -> likelihood parameters, through the mean of p(z1|z2)."""
        return self.decode_bottom(self.top_down(z).mu, y)

    def decode_bottom(self, z1: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().decode(z1, y)  # (B, Z1) -> (B, C, H, W)

    def decode_prior_draw(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Ancestral: z2 ~ N(0, I), then z1 ~ p(z1|z2) drawn, not its mean; the decoder's output at z1."""
        z2 = torch.randn((n, self.latent_dim), generator=generator, device=self.device)
        return self.decode_bottom(self.top_down(z2).rsample(generator), y)  # (n, Z1) -> (n, P, H, W)

    def _split_noise(
        self, eps: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """eps (..., Z2 + Z1), drawn when not given -> eps2 (..., Z2), eps1 (..., Z1)."""
        if eps is None:
            eps = torch.randn((*shape, self.noise_dim), generator=generator, device=like.device, dtype=like.dtype)
        return eps[..., : self.latent_dim], eps[..., self.latent_dim :]

    def _descend(
        self, top: LadderPosterior, eps2: torch.Tensor, eps1: torch.Tensor
    ) -> tuple[torch.Tensor, DiagonalGaussian, DiagonalGaussian, torch.Tensor]:
        """One reparameterised pass down the ladder: z2 ~ q(z2|x), then p(z1|z2), q(z1|x, z2) and
        z1 ~ q(z1|x, z2). eps2 (..., B, Z2), eps1 (..., B, Z1); leading sample dimensions broadcast."""
        z2 = top.rsample(eps=eps2)  # (..., B, Z2)
        prior1 = self.top_down(z2)  # (..., B, Z1)
        posterior1 = precision_weighted(top.bottom_up, prior1)
        return z2, prior1, posterior1, posterior1.rsample(eps=eps1)

    def elbo(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        kl_batch_mean: BatchMean | None = None,
        y: torch.Tensor | None = None,
    ) -> ElboTerms:
        """eps (B, Z2 + Z1). KL = KL(q(z2|x) || N(0, I)) + KL(q(z1|x, z2) || p(z1|z2)), per dimension."""
        top = self.encode(x, y)
        eps2, eps1 = self._split_noise(eps, tuple(top.mu.shape[:-1]), top.mu, generator)
        _, prior1, posterior1, z1 = self._descend(top, eps2, eps1)
        log_px = self.log_likelihood(x, self.decode_bottom(z1, y))
        kl_per_dim = torch.cat([top.kl_per_dim(), kl_gaussians(posterior1, prior1)], dim=-1)  # (B, Z2 + Z1)
        return elbo_terms(log_px, kl_per_dim, beta, free_bits, kl_batch_mean)

    def log_weights(
        self,
        x: torch.Tensor,
        posterior: DiagonalGaussian,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log w_k = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x, z2) - log q(z2|x), (K, B)."""
        if not isinstance(posterior, LadderPosterior):
            raise VaekitError("LadderVAE.log_weights needs the posterior from its own encode()")
        batch = x.shape[0]
        eps2, eps1 = self._split_noise(eps, (k, batch), posterior.mu, generator)
        z2, prior1, posterior1, z1 = self._descend(posterior, eps2, eps1)  # (K, B, Z2), ..., (K, B, Z1)
        decoded = self.decode_bottom(z1.flatten(0, 1), repeat_labels(y, k))  # (K * B, C, H, W)
        log_px = self.log_likelihood(x, decoded).view(k, batch)  # (K, B)
        log_pz = standard_normal_log_prob(z2) + prior1.log_prob(z1)
        log_qz = posterior.log_prob(z2) + posterior1.log_prob(z1)
        return log_importance_weights(log_px, log_pz, log_qz), log_px

    def bottom_means(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of q(z1|x, z2) at z2 = the mean of q(z2|x), (B, Z1)."""
        top = self.encode(x, y)
        return precision_weighted(top.bottom_up, self.top_down(top.mu)).mu

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z1] at the posterior means: z2 = mu(x), then z1 = the mean of q(z1|x, z2)."""
        return self.mean_image(self.decode_bottom(self.bottom_means(x, y), y))
