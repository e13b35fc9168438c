"""The VAE: an encoder giving q(z|x), a decoder giving p(x|z), and the N(0, I) prior.

Shapes: B batch, (C, H, W) image, Z latent. The encoder returns (B, 2Z) = [mu, logvar]; the
decoder returns (B, P, H, W) likelihood parameters (logits for Bernoulli, means for Gaussian; P = C
but for mixtures, plus feature maps for a pixel-context head).

A conditional model (`classes` K >= 2, models/conditional.py) takes each image's label y, int64
(B,), in every method that encodes or decodes; an unconditional one takes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood
from vaekit.models.pixelcontext import PixelContextHead
from vaekit.objectives import BatchMean, ElboTerms, KlPart, ModelTerms, elbo_of, iwae_of
from vaekit.posteriors import GaussianFamily, Posterior, PosteriorFamily
from vaekit.priors import Prior, StandardNormalPrior


@dataclass(frozen=True)
class SeparatePart:
    """A part of a model kept in a file of its own beside each checkpoint, because it is trained in
    a phase after the autoencoder (a VQ-VAE's prior over codes); checkpoint.py attaches it."""

    module: nn.Module
    file: str  # its file name, beside the checkpoint
    file_format: str  # the "format" its file's header carries
    description: str  # what it is, for messages


class VAE(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        prior: Prior | None = None,
        pixel_context: PixelContextHead | None = None,
        classes: int = 0,
        family: PosteriorFamily | None = None,
    ) -> None:
        super().__init__()
        self.classes = classes  # 0: unconditional; else the encoder and decoder take the label too
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        # None: a mean-field decoder (pixels independent given z); else an autoregressive head
        # between the decoder and the likelihood (models/pixelcontext.py).
        self.pixel_context = pixel_context
        self.latent_dim = latent_dim
        # What turns the encoder's outputs into q(z|x) (posteriors/): a module of the model, so a
        # flow's networks are weights like any other.
        self.family = family if family is not None else GaussianFamily(latent_dim)
        self.noise_dim = self.family.noise_dim  # standard normal numbers one posterior sample takes
        self.image_shape = image_shape
        # A likelihood that leaves empty cells (NaN) out of log p(x|z) has the encoder see them as 0,
        # as MIWAE's does; data without empty cells is untouched.
        self.fills_empty_cells = bool(getattr(likelihood, "observed_cells_only", False))
        # An encoder says whether it runs faster on channels-last (NHWC) tensors (the conv families
        # do, with oneDNN, in fp32 and more so in bf16: benchmarks/suite.py); an MLP gains nothing.
        self.channels_last = bool(getattr(encoder, "prefers_channels_last", False))
        if self.channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it

    @property
    def closed_form_kl(self) -> bool:
        """Whether encode(x).kl_per_dim() is the model's whole KL term, dimension by dimension."""
        return self.prior.closed_form_kl and self.family.kl_per_dimension

    def describe_codes(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named (B, ...) arrays that describe q(z|x) for `vaekit encode`: the family's summary, as z_<name>."""
        return {f"z_{name}": value for name, value in self.encode(x, y).summary().items()}

    @property
    def point_code_name(self) -> str:
        """Which of describe_codes' arrays is the point code (the family's: z_mean for a Gaussian)."""
        return f"z_{self.family.point_code}"

    def separate_parts(self) -> tuple[SeparatePart, ...]:
        """The parts kept in files of their own (none, but for a family that trains one after)."""
        return ()

    @property
    def can_sample(self) -> bool:
        """Whether the model can generate: a VQ-VAE only once its prior over codes is trained."""
        return not self.cannot_sample_because

    @property
    def cannot_sample_because(self) -> str:
        """Why the model cannot generate yet, and how to make it (empty when it can)."""
        return ""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_labels(self, y: torch.Tensor | None) -> None:
        """A conditional model needs labels and an unconditional one takes none."""
        if self.classes and y is None:
            raise VaekitError(f"this model is conditional ({self.classes} classes): give each image's label y")
        if not self.classes and y is not None:
            raise VaekitError("this model is not conditional and takes no labels: train it with --conditional")

    def conditioning(self, labels: np.ndarray | None, source: str = "the data") -> np.ndarray | None:
        """The labels this model is to be given for a set of items: `labels` (N,) for a conditional
        model, checked against its classes; None for an unconditional one, whatever the data has."""
        if not self.classes:
            return None
        if labels is None:
            raise VaekitError(
                f"this run is conditional ({self.classes} classes) but {source} has no labels: give labelled data "
                "(an npz with y, class sub-folders, a table's --label-column)"
            )
        unknown = labels[(labels < 0) | (labels >= self.classes)]
        if len(unknown):
            raise VaekitError(
                f"{source} has label {int(unknown[0])} but this run knows classes 0 to {self.classes - 1}: "
                "give data labelled like the run's training set"
            )
        return labels

    def cycled_labels(self, n: int) -> torch.Tensor | None:
        """Labels 0, 1, ..., K-1, 0, 1, ... (n,) to draw every class in turn; None when unconditional."""
        return torch.arange(n, device=self.device) % self.classes if self.classes else None

    def encoder_outputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) -> the encoder's (B, W) outputs, in fp32: under bf16 autocast only the
        network runs in bf16; the distributions, the KL and the likelihood are computed in fp32."""
        self.check_labels(y)
        if self.fills_empty_cells:
            x = torch.nan_to_num(x, nan=0.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # same shape, NHWC strides
        return (self.encoder(x) if y is None else self.encoder(x, y)).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """q(z|x) for a batch: a DiagonalGaussian for --posterior gaussian, else the family's
        posterior (posteriors/base.py's contract)."""
        posterior: Posterior = self.family(self.encoder_outputs(x, y))
        return posterior

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_labels(y)
        z = self.family.decoder_input(z)
        return (self.decoder(z) if y is None else self.decoder(z, y)).float()  # (B, Z) -> (B, C, H, W)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per decoding: x (B, C, H, W), decoded (K * B, P(+F), H, W) for K decodings of
        each image, sample-major (K = 1 but for importance sampling) -> (K * B,)."""
        if self.pixel_context is not None:
            decoded = self.pixel_context(x, decoded).float()  # (K * B, P + F, H, W) -> (K * B, P, H, W)
        k = decoded.shape[0] // x.shape[0]
        x_rep = x.expand(k, *x.shape).flatten(0, 1) if k > 1 else x  # (K * B, C, H, W)
        return self.likelihood.log_prob(x_rep, decoded)  # (K * B,)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z] in model scale, for pictures. With a pixel-context head, each pixel is the mean
        of its distribution given z and the pixels chosen before it."""
        if self.pixel_context is not None:
            return self.pixel_context.generate(decoded, self.likelihood.mean)
        return self.likelihood.mean(decoded)

    def terms(
        self,
        x: torch.Tensor,
        posterior: Any,
        samples: int | None = None,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ModelTerms:
        """The model's terms at draws from `posterior` (its own encode(x)): one per item (`samples`
        None, eps (B, N), tensors (B,)) or K per item (eps (K, B, N), tensors (K, B)); eps is drawn
        from `generator` unless given. The one declaration the objectives and metrics compose:
        a ladder or a VQ-VAE overrides this alone."""
        # one draw: the posterior draws eps from `generator` itself; K: (K, B, N) drawn here
        if samples is not None:
            eps, generator = self.noise((samples, x.shape[0]), generator, eps), None
        if self.closed_form_kl:  # a diagonal Gaussian under N(0, I): the KL per dimension, exactly
            z = posterior.rsample(generator, eps)  # (B, Z) or (K, B, Z)
            kl_per_dim = KlPart(posterior.kl_per_dim())  # (B, Z)
            densities = lambda: (self.prior.log_prob(z, self.encode), posterior.log_prob(z))  # noqa: E731
            return ModelTerms(z, self._log_px(x, z, y, samples), densities, (kl_per_dim,))
        draw = posterior.rsample_and_log_prob(generator, eps)  # z, log q(z|x)
        log_pz = self.prior.log_prob(draw.z, self.encode)
        # the family's closed form against its prior where it has one, else log q(z|x) - log p(z)
        kl = KlPart(self.family.kl(posterior, draw, log_pz)[..., None], (self.latent_dim,))  # (..., B, 1)
        log_px = self._log_px(x, draw.z, y, samples)
        return ModelTerms(draw.z, log_px, lambda: (log_pz, draw.log_q), (kl,), draw.correction)

    def _log_px(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None, samples: int | None) -> torch.Tensor:
        """log p(x|z) at draws z (B, Z) or (K, B, Z): (B,) or (K, B)."""
        if samples is None:
            return self.log_likelihood(x, self.decode(z, y))
        decoded = self.decode(z.flatten(0, 1), repeat_labels(y, samples))  # (K * B, C, H, W)
        return self.log_likelihood(x, decoded).view(z.shape[:-1])

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
        """Per-image ELBO terms from one draw; eps (B, N) is the reparameterisation noise, drawn from
        `generator` unless given. `kl_batch_mean` gives the batch-mean KL per dimension that free
        bits compare with their floor (by default this batch's; the trainer's spans every rank)."""
        return elbo_of(self.terms(x, self.encode(x, y), None, generator, eps, y), beta, free_bits, kl_batch_mean)

    def noise(
        self, shape: tuple[int, ...], generator: torch.Generator | None, eps: torch.Tensor | None
    ) -> torch.Tensor:
        """eps itself, or standard normal noise (*shape, N) for `shape` draws of the posterior."""
        if eps is not None:
            return eps
        dtype = next(self.parameters()).dtype
        return torch.randn((*shape, self.noise_dim), generator=generator, device=self.device, dtype=dtype)

    def log_weights(
        self,
        x: torch.Tensor,
        posterior: Any,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K importance samples z_k ~ q(z|x): log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) and
        log p(x|z_k), both (K, B). eps (K, B, N) is drawn from `generator` unless given."""
        terms = self.terms(x, posterior, k, generator, eps, y)
        return terms.log_w, terms.log_px

    def iwae(
        self,
        x: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> ElboTerms:
        """The importance-weighted objective (Burda et al. 2016) from K draws per image: see iwae_of."""
        return iwae_of(self.terms(x, self.encode(x, y), k, generator, eps, y))

    def draw_image(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z) in model scale: what the model generates. With a pixel-context head, pixel by
        pixel, each drawn given z and the pixels drawn before it."""
        if self.pixel_context is not None:
            return self.pixel_context.generate(decoded, lambda params: self.likelihood.sample(params, generator))
        return self.likelihood.sample(decoded, generator)

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents z (n, Z) drawn from the model's own prior, as the decoder takes them."""
        return self.prior.sample(n, generator, self.device, self.encode)

    def decode_prior_draw(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The decoder's output at n draws from the model's own prior, (n, P, H, W); y (n,) the
        labels to draw for a conditional model."""
        return self.decode(self.prior_latents(n, generator), y)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, draw: bool = False, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """n images from the model, (n, C, H, W): z from its prior, then E[x|z] (a smooth picture) or,
        with `draw`, x ~ p(x|z) (what the model actually generates). A conditional model draws
        image i of class y[i]."""
        decoded = self.decode_prior_draw(n, generator, y)
        return self.draw_image(decoded, generator) if draw else self.mean_image(decoded)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] at the posterior mean z = mu(x), (B, C, H, W)."""
        return self.mean_image(self.decode(self.encode(x, y).mode(), y))


def repeat_labels(y: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """Labels (B,) -> (K * B,) for K decodings of each image, sample-major like the decodings."""
    return None if y is None else y.repeat(k)
