"""A VAE with two stochastic layers and ladder-style top-down inference (Sønderby et al. 2016,
https://arxiv.org/abs/1602.02282).

Generative model: z2 ~ N(0, I), z1 ~ p(z1|z2) = N(mu_p(z2), var_p(z2)), x ~ p(x|z1).
Inference: the bottom-up pass gives an estimate N(mu_hat, var_hat) of z1 from x and, from that,
q(z2|x); the top-down pass then combines the estimate with the generative p(z1|z2) by precision
weighting, so q(z1|x, z2) and p(z1|z2) share the top-down network. Both KL terms are closed forms
between Gaussians; the IWAE weights use the joint densities of (z1, z2).

With --posterior iaf, q(z2|x) is followed by an inverse autoregressive flow (posteriors/iaf.py)
under a context the encoder gives beside its estimate of z1: z2 = flow(z2_0), its KL to N(0, I)
the one-sample estimate log q(z2|x) - log N(z2). q(z1|x, z2) stays the precision-weighted
Gaussian, its KL to p(z1|z2) in closed form given the flowed z2. A flow on z1 too, as in Kingma et
al. (2016)'s ladder, made that KL a one-sample estimate against a learned p(z1|z2) whose variance
shrinks as training goes on: a small move of the flow then cost 10^5 nats and more, and two
75-epoch runs of iaf-binarized diverged (epochs 31 and 39).

Shapes: B batch, Z1 bottom latent, Z2 top latent, C flow context. The encoder and decoder are the
usual families (mlp, conv, resnet) around z1; z2 is the "latent space" the pictures and maps show.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vaekit.distributions import DiagonalGaussian, kl_gaussians, standard_normal_log_prob
from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood
from vaekit.models.layers import activation
from vaekit.models.pixelcontext import PixelContextHead
from vaekit.models.vae import VAE, repeat_labels
from vaekit.objectives import KlPart, ModelTerms
from vaekit.posteriors import InverseAutoregressiveFlow
from vaekit.posteriors.iaf import bounded_base


class LadderPosterior(DiagonalGaussian):
    """q(z2|x), carrying the bottom-up estimate of z1 the top-down pass needs and, with a flow, its
    context (B, C) and the flow (its mean is then the base's, and `mode()` the flow's image of it)."""

    def __init__(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        bottom_up: DiagonalGaussian,
        context: torch.Tensor | None = None,
        flow: InverseAutoregressiveFlow | None = None,
    ) -> None:
        super().__init__(mu, logvar)
        self.bottom_up, self.context, self.flow = bottom_up, context, flow

    def mode(self) -> torch.Tensor:
        if self.flow is None or self.context is None:
            return self.mu
        return self.flow(self.mu, self.context)[0]


@dataclass(frozen=True)
class Descent:
    """One pass down the ladder: z2 and z1 (..., B, Z), p(z1|z2), q(z1|x, z2), and log q of both
    draws (..., B) (z2's flow's log-determinant included)."""

    z2: torch.Tensor
    z1: torch.Tensor
    prior1: DiagonalGaussian
    posterior1: DiagonalGaussian
    log_q2: torch.Tensor
    log_q1: torch.Tensor


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
        flow: InverseAutoregressiveFlow | None = None,
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
        self.flow = flow  # --posterior iaf: z2's flow, under the encoder's context

    def describe_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """z2's centre (and std, without a flow: a flowed z2 is no Gaussian to give one) and z1's
        mean and std given z2 at that centre."""
        posterior = self.encode(x, y)
        centre = posterior.mode()  # z2's mean, or with a flow its image of the base mean
        bottom = precision_weighted(posterior.bottom_up, self.top_down(centre))  # q(z1|x, z2) at that z2
        top = {"z2_centre": centre} if self.flow is not None else {"z2_mean": centre, "z2_std": posterior.std}
        return {**top, "z1_mean": bottom.mu, "z1_std": bottom.std}

    @property
    def point_code_name(self) -> str:
        return "z2_mean" if self.flow is None else "z2_centre"

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LadderPosterior:
        params = self.encoder_outputs(x, y)  # (B, 2 Z1 + C), fp32
        bottom_up = DiagonalGaussian.from_params(params[..., : 2 * self.bottom_dim])  # the encoder's estimate of z1
        context = params[..., 2 * self.bottom_dim :] if self.flow is not None else None  # (B, C)
        # float(): under bf16 autocast only the networks run in bf16 (as in VAE.encode)
        top = DiagonalGaussian.from_params(self.up(torch.cat([bottom_up.mu, bottom_up.logvar], dim=-1)).float())
        if self.flow is not None:  # the flow's base, bounded as a one-layer flow's is (posteriors/iaf.py)
            top = bounded_base(top)
        return LadderPosterior(top.mu, top.logvar, bottom_up, context, self.flow)

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

    def _descend(self, top: LadderPosterior, eps2: torch.Tensor, eps1: torch.Tensor) -> Descent:
        """One reparameterised pass down the ladder: z2 ~ q(z2|x), then p(z1|z2), q(z1|x, z2) and
        z1 ~ q(z1|x, z2), z2 through its flow when there is one. eps2 (..., B, Z2), eps1 (..., B, Z1);
        leading sample dimensions broadcast."""
        z2 = top.rsample(eps=eps2)  # (..., B, Z2)
        log_q2 = top.log_prob(z2)
        if self.flow is not None and top.context is not None:
            z2, log_det = self.flow(z2, top.context)
            log_q2 = log_q2 - log_det
        prior1 = self.top_down(z2)  # (..., B, Z1)
        posterior1 = precision_weighted(top.bottom_up, prior1)
        z1 = posterior1.rsample(eps=eps1)
        return Descent(z2, z1, prior1, posterior1, log_q2, posterior1.log_prob(z1))

    def terms(
        self,
        x: torch.Tensor,
        posterior: DiagonalGaussian,
        samples: int | None = None,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ModelTerms:
        """log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x, z2) - log q(z2|x); eps
        (..., B, Z2 + Z1). For one draw also the KL: KL(q(z2|x) || N(0, I)) + KL(q(z1|x, z2) ||
        p(z1|z2)), per dimension in closed form; with a flow on z2, its part is the one-draw
        estimate log q(z2|x) - log N(z2), one number that free bits floor at free_bits x Z2."""
        if not isinstance(posterior, LadderPosterior):
            raise VaekitError("LadderVAE.terms needs the posterior from its own encode()")
        shape = (x.shape[0],) if samples is None else (samples, x.shape[0])
        eps2, eps1 = self._split_noise(eps, shape, posterior.mu, generator)
        down = self._descend(posterior, eps2, eps1)  # z2 (..., B, Z2), z1 (..., B, Z1)
        labels = y if samples is None else repeat_labels(y, samples)
        decoded = self.decode_bottom(down.z1.flatten(0, -2), labels)  # (K * B, C, H, W)
        log_px = self.log_likelihood(x, decoded).view(shape)

        def densities() -> tuple[torch.Tensor, torch.Tensor]:
            log_pz = standard_normal_log_prob(down.z2) + down.prior1.log_prob(down.z1)
            return log_pz, down.log_q2 + down.log_q1

        if samples is not None:  # the KL part is (log p(x|z) - log w)'s mean over the draws
            return ModelTerms(down.z1, log_px, densities)
        kl1_per_dim = kl_gaussians(down.posterior1, down.prior1)  # (B, Z1), given the drawn z2
        kl: tuple[KlPart, ...]
        if self.flow is not None:
            kl2 = down.log_q2 - standard_normal_log_prob(down.z2)  # (B,)
            kl = (KlPart(kl2[:, None], (self.latent_dim,)), KlPart(kl1_per_dim))
        else:
            kl = (KlPart(torch.cat([posterior.kl_per_dim(), kl1_per_dim], dim=-1)),)  # (B, Z2 + Z1)
        return ModelTerms(down.z1, log_px, densities, kl)

    def bottom_means(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z1's single code: the mean of q(z1|x, z2) at z2's code (the mean of q(z2|x), through its
        flow when there is one), (B, Z1)."""
        top = self.encode(x, y)
        return precision_weighted(top.bottom_up, self.top_down(top.mode())).mu

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z1] at the posterior means: z2 = mu(x), then z1 = the mean of q(z1|x, z2)."""
        return self.mean_image(self.decode_bottom(self.bottom_means(x, y), y))
