"""One likelihood per column of a table (data/columns.py): for each number column (standardised) a
Gaussian with a learned variance, or a mixture of `modes` Gaussians whose weights, means and
variances the decoder gives (multi-modal columns, the idea of TVAE's mode-specific normalisation
kept as a density); a categorical (softmax over the decoder's logits) for each category or
boolean column. An empty cell is left out of log p(x|z): the figure is the observed
part's, as MIWAE trains (Mattei & Frellsen 2019), never a guess filled in before training.

The decoder gives one output per encoded position with one mode: a number column's mean, a
category column's logits over its values. With M >= 2 modes it gives 3M per position, (B, 3M, 1, W):
a number's M weight logits, M means and M log-variances; a category's logits are the first of its
3M (the rest unused). Shapes: B rows, W encoded width (rows are (B, 1, 1, W)), C columns.
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
    """p(x|z) = prod over observed cells of N(x_c; mean_c, sigma_c^2) (or sum_m pi_cm N(x_c; mean_cm,
    sigma_cm^2) with modes) or Cat(x_c; softmax(logits_c))."""

    observed_cells_only = True  # the model's encoder sees an empty cell as 0 (models/vae.py)
    numbers: torch.Tensor  # the encoded positions of the number columns, int64 (n,)
    mode_offsets: torch.Tensor  # where each mode's mean starts, standardised units, (M,)

    def __init__(self, schema: TableSchema, sigma: float, modes: int = 1) -> None:
        super().__init__()
        self.schema = schema
        self.modes = modes
        self.params_per_channel = 1 if modes == 1 else 3 * modes
        numbers_title = "Gaussian" if modes == 1 else f"mixture of {modes} Gaussians"
        self.title = f"per-column ({numbers_title} for numbers, categorical for categories)"
        # modes start spread over the standardised range, so that they do not all learn one place
        self.register_buffer("mode_offsets", torch.linspace(-1.5, 1.5, modes) if modes > 1 else torch.zeros(1))
        self.initial_logvar = 2.0 * math.log(sigma / modes)
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

    def _logits(self, decoded: torch.Tensor) -> torch.Tensor:
        """The categories' logits (and, with one mode, the numbers' means): (B, P, 1, W) -> (B, W)."""
        return decoded.flatten(1) if self.modes == 1 else decoded[:, 0].flatten(1)

    def _mixture(self, decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The number columns' mixtures: log-weights, means and log-variances, each (B, M, n)."""
        params = decoded.flatten(2)[:, :, self.numbers]  # (B, 3M, n)
        weights, means, logvars = params.split(self.modes, dim=1)
        means = means + self.mode_offsets[:, None]
        return F.log_softmax(weights, dim=1), means, floored(logvars + self.initial_logvar, MIN_LOGVAR)

    def log_prob_by_column(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x_c|z) of each column, 0 where the cell is empty: (B, 1, 1, W), (B, P, 1, W) -> (B, C)."""
        x, logits = x.flatten(1), self._logits(decoded)  # (B, W) each
        out = logits.new_zeros(len(x), len(self.schema.names))
        if len(self.number_columns):
            cells = x[:, self.numbers]  # (B, n)
            empty = torch.isnan(cells)
            if self.modes == 1:
                means, logvar = logits[:, self.numbers], self.effective_logvar
                gaussian = -0.5 * ((cells.nan_to_num() - means).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
            else:
                log_weights, means, logvars = self._mixture(decoded)
                squared = (cells.nan_to_num()[:, None] - means).pow(2)  # (B, M, n)
                per_mode = -0.5 * (squared * torch.exp(-logvars) + logvars + LOG_2PI)
                gaussian = torch.logsumexp(log_weights + per_mode, dim=1)  # (B, n)
            out[:, self.number_columns] = torch.where(empty, torch.zeros_like(gaussian), gaussian)
        for column, (start, stop) in zip(self.block_columns, self.blocks, strict=True):
            one_hot = x[:, start:stop].nan_to_num()  # an empty cell: all zeros, so log p = 0
            out[:, column] = (F.log_softmax(logits[:, start:stop], dim=1) * one_hot).sum(1)
        return out

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        return self.log_prob_by_column(x, decoded).sum(1)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """E[x|z]: each number's mean, each category's probabilities, (B, P, 1, W) -> (B, 1, 1, W)."""
        flat = self._logits(decoded).clone()
        if self.modes > 1 and len(self.number_columns):
            log_weights, means, _ = self._mixture(decoded)
            flat[:, self.numbers] = (log_weights.exp() * means).sum(1)
        for start, stop in self.blocks:
            flat[:, start:stop] = torch.softmax(flat[:, start:stop], dim=1)
        return flat.view(len(flat), 1, 1, -1)

    def sample(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z): each number drawn from its Gaussian (a mode, then a value), each category from
        its softmax (one-hot); (B, P, 1, W) -> (B, 1, 1, W)."""
        flat = self._logits(decoded).clone()
        if len(self.number_columns):
            if self.modes == 1:
                means, stds = flat[:, self.numbers], torch.exp(0.5 * self.effective_logvar)
            else:
                log_weights, all_means, logvars = self._mixture(decoded)  # (B, M, n)
                weights = log_weights.exp().transpose(1, 2).flatten(0, 1)  # (B * n, M)
                mode = torch.multinomial(weights, 1, generator=generator).view(len(flat), 1, -1)  # (B, 1, n)
                means = all_means.gather(1, mode)[:, 0]
                stds = torch.exp(0.5 * logvars.gather(1, mode)[:, 0])
            noise = torch.randn(means.shape, generator=generator, device=flat.device)
            flat[:, self.numbers] = means + stds * noise
        for start, stop in self.blocks:
            chosen = torch.multinomial(torch.softmax(flat[:, start:stop], dim=1), 1, generator=generator)
            flat[:, start:stop] = F.one_hot(chosen[:, 0], stop - start).to(flat.dtype)
        return flat.view(len(flat), 1, 1, -1)


@dataclass(frozen=True)
class MixedSettings:
    # the number columns' initial sigma, in standardised units (learned per column)
    sigma: float = setting(
        1.0,
        "gaussian, logistic, logistic-mixture, mixed: fixed sigma, or the initial one when learned",
        above=0.0,
        high=1e6,
    )
    # 1: one Gaussian per number column with one learned variance; M >= 2: a mixture of M
    # Gaussians per number column, its weights, means and variances given by the decoder per row
    modes: int = setting(
        1,
        "mixed: Gaussian modes per number column (1: one Gaussian with a learned variance per column)",
        flag="number-modes",
        low=1,
        high=20,
    )


def _build(settings: MixedSettings, context: LikelihoodContext) -> MixedLikelihood:
    if context.table is None:
        raise VaekitError(
            "--likelihood mixed models a table's columns, and this data is images: choose a likelihood of pixels "
            "(bernoulli, gaussian, logistic, ...)"
        )
    return MixedLikelihood(context.table, settings.sigma, settings.modes)


SPECS = (
    MethodSpec(
        "mixed",
        "one likelihood per table column: Gaussian numbers (or a mixture of --number-modes), categorical categories; "
        "empty cells left out",
        "https://arxiv.org/abs/1812.02633",
        _build,
        MixedSettings,
        offers=frozenset({"density", "table_rows", "table_columns"}),
    ),
)
