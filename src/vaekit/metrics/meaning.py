"""What a figure in nats is, and whether it may be given in bits per dimension.

A number is a likelihood only when the model is a normalised distribution over the values the
data takes (Loaiza-Ganem & Cunningham 2019):
- a Bernoulli on binary pixels (`--binarize`) and the discretised logistics on 8-bit pixels are:
  their nats are -log p(x), and bits/dim = nats / (D ln 2);
- a Bernoulli on grey pixels (the tutorials' binary cross-entropy) is a cross-entropy: nats only;
- a continuous density (Gaussian, continuous Bernoulli) at the pixel values is a density, not a
  probability: nats only. With uniformly dequantised pixels (`--dequantize`: level k drawn
  uniformly from its bin of width w, the 256 bins tiling the range) Jensen's inequality gives
      -log P(k) <= E_u[-log p((k + u) w)] - D log w,
  so the dequantised nats, minus D log w, bound the 8-bit image's -log P and give bits/dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vaekit import methods
from vaekit.config import DataConfig
from vaekit.data.transforms import pixel_bin_width
from vaekit.likelihoods import Likelihood
from vaekit.objectives import bits_per_dim

Kind = Literal["likelihood", "cross-entropy", "density", "dequantized-density", "reconstruction"]

# The word eval.json keys use for each kind: iwae_<word>_nats, elbo_<word>_nats.
KEY_WORDS: dict[Kind, tuple[str, str]] = {
    "likelihood": ("nelbo", "nll"),
    "cross-entropy": ("cross_entropy", "cross_entropy"),
    "density": ("neg_log_density", "neg_log_density"),
    "dequantized-density": ("neg_log_density", "neg_log_density"),
    "reconstruction": ("recon_at_mean", "recon_at_mean"),  # a deterministic encoder: no bound at all
}

NO_ELBO = (
    "no likelihood figure: a WAE's encoder is deterministic, a point mass with no ELBO; the figure is the "
    "reconstruction cost -log p(x | z = mu(x)), nats/{item}"
)


def has_elbo(objective: str) -> bool:
    """Whether a run trained with `objective` has an ELBO (and so an IWAE figure) at all: an
    objective whose encoder is deterministic (a point mass, the WAE's) does not offer one."""
    return "elbo" in methods.find("objective", objective).offers


@dataclass(frozen=True)
class FigureMeaning:
    kind: Kind
    description: str  # what the nats measure, for tables, files and the report
    log_bin_width: float  # per dimension, subtracted before bits/dim (dequantised densities), else 0
    advice: str | None = None  # how to get a likelihood instead, where this is none

    @property
    def has_bits_per_dim(self) -> bool:
        return self.kind in ("likelihood", "dequantized-density")

    @property
    def label(self) -> str:
        """What to call the figure in a table or a one-line report."""
        return {
            "likelihood": "-log p(x)",
            "cross-entropy": "cross-entropy",
            "density": "-log density",
            "dequantized-density": "-log density (dequantised)",
            "reconstruction": "reconstruction at z = mu(x)",
        }[self.kind]

    @property
    def elbo_key(self) -> str:
        return f"elbo_{KEY_WORDS[self.kind][0]}_nats"

    @property
    def iwae_key(self) -> str:
        return f"iwae_{KEY_WORDS[self.kind][1]}_nats"

    def bits_per_dim(self, nats: float, num_dims: int) -> float | None:
        """Bits per dimension of a figure in nats per image, or None where they would mislead."""
        return bits_per_dim(nats, num_dims, self.log_bin_width) if self.has_bits_per_dim else None


# Appended to a figure's description when a conditional model was given each item's label.
_GIVEN_LABEL = ", given each item's label (a conditional model: p(x|y))"

LIKELIHOOD_ADVICE = (
    "for a likelihood, train on binarised pixels (--binarize) or model the 8-bit levels "
    "(--likelihood logistic --pixel-range symmetric)"
)


def item_word(data: DataConfig) -> str:
    """What one data item is called next to a figure: nats per image, or per item of a table."""
    return "item" if data.is_table else "image"


def figure_description(likelihood: Likelihood, data: DataConfig, conditional: bool, objective: str = "elbo") -> str:
    """What the figures are, in words; a conditional model's are given each item's label."""
    what = figure_meaning(likelihood, data).description if has_elbo(objective) else NO_ELBO.format(item=item_word(data))
    return what + (_GIVEN_LABEL if conditional else "")


def figure_meaning(likelihood: Likelihood, data: DataConfig) -> FigureMeaning:
    """What the nats of `likelihood` on data prepared by `data` are."""
    title = likelihood.title
    if data.is_table:  # an item is a row of features
        if getattr(likelihood, "observed_cells_only", False):  # one likelihood per column (likelihoods/mixed.py)
            what = f"of each row's observed cells under {title.split(' (')[0]} likelihoods"
            if likelihood.support == "levels":  # categories alone: a probability mass
                return FigureMeaning("likelihood", f"-log p(x) {what}, nats/item", 0.0)
            return FigureMeaning(
                "density",
                f"-log density {what} (standardised numbers, categories' probabilities), nats/item (a density: no "
                "bits/dim)",
                0.0,
            )
        if likelihood.support == "binary":
            return FigureMeaning("likelihood", f"-log p(x) of the 0/1 features under a {title}, nats/item", 0.0)
        return FigureMeaning(
            "density",
            f"-log density of the standardised features under a {title}, nats/item (a density: no bits/dim)",
            0.0,
        )
    if likelihood.support == "binary":
        if data.binary_pixels:
            what = "binarised" if data.binarize else "binary"
            return FigureMeaning("likelihood", f"-log p(x) of the {what} image under a {title}, nats/image", 0.0)
        return FigureMeaning(
            "cross-entropy",
            f"{title} cross-entropy on grey pixels, nats/image (not a likelihood: no bits/dim)",
            0.0,
            f"a {title} on grey pixels is a cross-entropy, not a likelihood; {LIKELIHOOD_ADVICE}",
        )
    if likelihood.support == "levels":
        return FigureMeaning("likelihood", f"-log p(x) of the 8-bit image under a {title}, nats/image", 0.0)
    if data.dequantize:
        return FigureMeaning(
            "dequantized-density",
            f"-log density of the dequantised image under a {title}, nats/image; its bits/dim bound the 8-bit "
            "image's -log P",
            math.log(pixel_bin_width(data)),
        )
    return FigureMeaning(
        "density",
        f"-log density at the pixel values under a {title}, nats/image (a density, not a probability: no bits/dim)",
        0.0,
        f"a {title} density at the pixel values is not the probability of the 8-bit image; add --dequantize for a "
        "bound on it with bits/dim, or use --likelihood logistic --pixel-range symmetric",
    )


def meaning_of_kind(kind: str) -> FigureMeaning:
    """The meaning stored in a result file by kind alone (for reading eval.json back); files from
    before figures had kinds hold likelihood keys."""
    chosen: Kind = next((known for known in KEY_WORDS if known == kind), "likelihood")
    return FigureMeaning(chosen, "", 0.0)
