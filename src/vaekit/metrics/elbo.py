"""Dataset-level ELBO: the per-image negative ELBO and its parts averaged over a whole set.

What the nats are (a likelihood, a cross-entropy or a density) depends on the likelihood and the
data: see meaning.py; bits/dim are given only where they are honest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.transforms import labelled_batches
from vaekit.metrics.meaning import figure_meaning, has_elbo, item_word, meaning_of_kind
from vaekit.models import VAE


@dataclass(frozen=True)
class ElboSummary:
    nelbo_nats: float  # negative ELBO, nats per image
    recon_nats: float  # -E_q[log p(x|z)], nats per image
    kl_nats: float  # KL(q(z|x) || p(z)), nats per image
    bits_per_dim: float | None  # None where the nats are not a likelihood (meaning.py)
    images: int
    figure: str = "likelihood"  # meaning.Kind: what the nats are
    item: str = "image"  # what the nats are per: an image, or an item (row) of a table

    def to_dict(self, prefix: str = "") -> dict[str, float | int | str]:
        left_out = ("item", "nelbo_nats", "kl_nats") if self.figure == "reconstruction" else ("item",)
        return {
            f"{prefix}{key}": value for key, value in asdict(self).items() if value is not None and key not in left_out
        }

    def line(self) -> str:
        """One line for the console: the figure, its parts, and bits/dim where they are honest."""
        if self.figure == "reconstruction":
            return f"reconstruction {self.recon_nats:.2f} nats/{self.item} at z = mu(x); no likelihood figure (no ELBO)"
        kind = "" if self.figure == "likelihood" else f" [{meaning_of_kind(self.figure).label}]"
        bits = "no bits/dim" if self.bits_per_dim is None else f"{self.bits_per_dim:.4f} bits/dim"
        return (
            f"-ELBO{kind} {self.nelbo_nats:.2f} nats/{self.item} "
            f"(recon {self.recon_nats:.2f} + KL {self.kl_nats:.2f}), {bits}"
        )


@torch.inference_mode()
def _per_item(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int,
    labels: np.ndarray | None,
    measure: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator], tuple[torch.Tensor, ...]],
    columns: int,
) -> tuple[torch.Tensor, ...]:
    """The `columns` per-item figures that `measure(x, y, generator)` gives, over every stored
    item, float64 (N,) each, in eval mode and from a fixed seed, so the same model on the same data
    always gets the same numbers."""
    was_training = model.training
    model.eval()
    device = model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = [
        tuple(part.double().cpu() for part in measure(x, y, generator))
        for x, y in labelled_batches(images, labels, data, batch_size, device, generator)
    ]
    model.train(was_training)
    if not batches:
        return (torch.zeros(0, dtype=torch.float64),) * columns
    return tuple(torch.cat(column) for column in zip(*batches, strict=True))


def elbo_terms_per_item(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-sample reconstruction term and KL of every stored item, float64 (N,) each, with a
    fixed seed. `labels` (N,): a conditional model's labels for the items (`model.conditioning`), else None."""

    def measure(x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        terms = model.elbo(x, generator=generator, y=y)
        return terms.recon_nats, terms.kl_nats

    recon, kl = _per_item(model, images, data, batch_size, seed, labels, measure, columns=2)
    return recon, kl


def column_terms_per_item(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> torch.Tensor:
    """-log p(x_c|z) of every column of every stored row, float64 (N, C), 0 for an empty cell, at
    the draws `elbo_terms_per_item` makes with the same seed: each row's sum is its reconstruction
    term. For a likelihood with one term per column (likelihoods/mixed.py)."""
    by_column = model.likelihood.log_prob_by_column  # type: ignore[attr-defined]  # the caller checked

    def measure(x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        terms = model.terms(x, model.encode(x, y), None, generator, y=y)
        return tuple((-by_column(x, model.decode(terms.z, y))).T)  # (B, C) -> C of (B,)

    columns = len(model.likelihood.schema.names)  # type: ignore[attr-defined]
    return torch.stack(_per_item(model, images, data, batch_size, seed, labels, measure, columns), dim=1)


def elbo_over(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> ElboSummary:
    """Mean single-sample negative ELBO over `images` (uint8, (N, C, H, W)); the mean of
    `elbo_terms_per_item` with the same seed and batch size."""
    return elbo_summary(model, data, *elbo_terms_per_item(model, images, data, batch_size, seed, labels))


def elbo_summary(model: VAE, data: DataConfig, recon: torch.Tensor, kl: torch.Tensor) -> ElboSummary:
    """The set's figure from `elbo_terms_per_item`'s reconstruction terms and KLs, (N,) each."""
    n = len(recon)
    return summarise(model, data, float(recon.sum()) / max(1, n), float(kl.sum()) / max(1, n), n)


def reconstruction_over(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> ElboSummary:
    """A deterministic encoder's figure (a WAE's): the mean of -log p(x | z = mu(x)) in nats per
    image, in place of an ELBO it does not have (its KL 0 is no KL: the summary leaves it out).
    The seed only draws a dynamic binarisation."""

    def measure(x: torch.Tensor, y: torch.Tensor | None, _: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (-model.log_likelihood(x, model.decode(model.encode(x, y).mode(), y)),)  # (B,)

    (recon,) = _per_item(model, images, data, batch_size, seed, labels, measure, columns=1)
    n = len(images)
    mean = float(recon.sum()) / max(1, n)
    return ElboSummary(mean, mean, 0.0, None, n, "reconstruction", item_word(data))


def set_figure(
    model: VAE,
    images: np.ndarray | torch.Tensor,
    data: DataConfig,
    batch_size: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
    objective: str = "elbo",
) -> ElboSummary:
    """The figure validation and the test summary report for a run trained with `objective`:
    the -ELBO, or the reconstruction cost where the encoder is deterministic (meaning.has_elbo)."""
    over = elbo_over if has_elbo(objective) else reconstruction_over
    return over(model, images, data, batch_size, seed, labels)


def summarise(model: VAE, data: DataConfig, recon_nats: float, kl_nats: float, images: int) -> ElboSummary:
    """The summary of a set from its mean reconstruction term and KL, in nats per image."""
    nelbo = recon_nats + kl_nats
    meaning = figure_meaning(model.likelihood, data)
    bits = meaning.bits_per_dim(nelbo, math.prod(model.image_shape))
    return ElboSummary(nelbo, recon_nats, kl_nats, bits, images, meaning.kind, item_word(data))
