"""One likelihood per column of a table (data/columns.py): a Gaussian with a learned variance for
each number column (standardised), a categorical (softmax over the decoder's logits) for each
category or boolean column. An empty cell is left out of log p(x|z): the figure is the observed
part's, as MIWAE trains (Mattei & Frellsen 2019), never a guess filled in before training.

The decoder gives one output per encoded position: a number column's mean, a category column's
logits over its values. Shapes: B rows, W encoded width (rows are (B, 1, 1, W)), C columns.
A figure is a density where the table has number columns (nats, no bits/dim), and a probability
mass where every column is a category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.data.columns import DISCRETE, TableSchema
from vaekit.distributions import LOG_2PI
from vaekit.errors import VaekitError
from vaekit.likelihoods.base import LikelihoodContext, Support, floored
from vaekit.likelihoods.gaussian import MIN_LOGVAR
from vaekit.methods import MethodSpec, setting


class MixedLikelihood(nn.Module):
    """p(x|z) = prod over observed cells of N(x_c; mean_c, sigma_c^2) or Cat(x_c; softmax(logits_c))."""

    title = "per-column (Gaussian for numbers, categorical for categories)"
    params_per_channel = 1
    observed_cells_only = True  # the model's encoder sees an empty cell as 0 (models/vae.py)
    numbers: torch.Tensor  # the encoded positions of the number columns, int64 (n,)

    def __init__(self, schema: TableSchema, sigma: float) -> None:
        super().__init__()
        self.schema = schema
        self.support: Support = "continuous" if not schema.all_categories else "levels"
        numbers = [s.start for s, kind in zip(schema.slices, schema.kinds, strict=True) if kind not in DISCRETE]
        self.register_buffer("numbers", torch.tensor(numbers, dtype=torch.int64), persistent=False)
        # one learned log-variance per number column, in standardised units, through MIN_LOGVAR's floor
        self.logvar = nn.Parameter(torch.full((len(numbers),), 2.0 * math.log(sigma)))
        self.blocks = [
            (s.start, s.stop) for s, kind in zip(schema.slices, schema.kinds, strict=True) if kind in DISCRETE
        ]
        # which column each number and each block is, for the per-column figures
        self.number_columns = [i for i, kind in enumerate(schema.kinds) if kind not in DISCRETE]
        self.block_columns = [i for i, kind in enumerate(schema.kinds) if kind in DISCRETE]

    @property
    def effective_logvar(self) -> torch.Tensor:
        return floored(self.logvar, MIN_LOGVAR)

    def log_prob_by_column(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x_c|z) of each column, 0 where the cell is empty: (B, 1, 1, W) twice -> (B, C)."""
        x, decoded = x.flatten(1), decoded.flatten(1)  # (B, W)
        out = decoded.new_zeros(len(x), len(self.schema.names))
        if len(self.number_columns):
            cells, means = x[:, self.numbers], decoded[:, self.numbers]  # (B, n)
            empty = torch.isnan(cells)
            logvar = self.effective_logvar
            gaussian = -0.5 * ((cells.nan_to_num() - means).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
            out[:, self.number_columns] = torch.where(empty, torch.zeros_like(gaussian), gaussian)
        for column, (start, stop) in zip(self.block_columns, self.blocks, strict=True):
            one_hot = x[:, start:stop].nan_to_num()  # an empty cell: all zeros, so log p = 0
            out[:, column] = (F.log_softmax(decoded[:, start:stop], dim=1) * one_hot).sum(1)
        return out

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return self.log_prob_by_column(x, decoded).sum(1)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z]: each number's mean, each category's probabilities, (B, 1, 1, W)."""
        flat = decoded.flatten(1).clone()
        for start, stop in self.blocks:
            flat[:, start:stop] = torch.softmax(flat[:, start:stop], dim=1)
        return flat.view_as(decoded)

    def sample(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z): each number drawn from its Gaussian, each category from its softmax (one-hot)."""
        flat = decoded.flatten(1).clone()
        if len(self.number_columns):
            noise = torch.randn(flat[:, self.numbers].shape, generator=generator, device=flat.device)
            flat[:, self.numbers] += torch.exp(0.5 * self.effective_logvar) * noise
        for start, stop in self.blocks:
            chosen = torch.multinomial(torch.softmax(flat[:, start:stop], dim=1), 1, generator=generator)
            flat[:, start:stop] = F.one_hot(chosen[:, 0], stop - start).to(flat.dtype)
        return flat.view_as(decoded)


@dataclass(frozen=True)
class MixedSettings:
    # the number columns' initial sigma, in standardised units (learned per column)
    sigma: float = setting(
        1.0,
        "gaussian, logistic, logistic-mixture, mixed: fixed sigma, or the initial one when learned",
        above=0.0,
        high=1e6,
    )


def _build(settings: MixedSettings, context: LikelihoodContext) -> MixedLikelihood:
    if context.table is None:
        raise VaekitError(
            "--likelihood mixed models a table's columns, and this data is images: choose a likelihood of pixels "
            "(bernoulli, gaussian, logistic, ...)"
        )
    return MixedLikelihood(context.table, settings.sigma)


SPECS = (
    MethodSpec(
        "mixed",
        "one likelihood per table column: Gaussian numbers, categorical categories; empty cells left out",
        "https://arxiv.org/abs/1812.02633",
        _build,
        MixedSettings,
        offers=frozenset({"density", "table_rows", "table_columns"}),
    ),
)
