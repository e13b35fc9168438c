"""The Bernoulli likelihood: p(x|z) = prod Bernoulli(x; sigmoid(logits)), the decoder's outputs
the logits. A probability mass on binary pixels (or a table's 0/1 columns); on grey pixels the
tutorials' binary cross-entropy, which is not a likelihood (metrics/meaning.py says so)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.likelihoods.base import Support, sum_pixels
from vaekit.methods import MethodSpec


def bernoulli_entropy(x: torch.Tensor) -> torch.Tensor:
    """H(x) = -sum_i [x_i log x_i + (1 - x_i) log(1 - x_i)] in nats per image, (B, C, H, W) -> (B,):
    the least cross-entropy a Bernoulli can give pixels x in [0, 1] (its logits at logit(x)). Zero
    for binary pixels; for grey ones it is the part of the cross-entropy no model can remove."""
    return -sum_pixels(torch.special.xlogy(x, x) + torch.special.xlogy(1.0 - x, 1.0 - x))


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); the decoder outputs logits."""

    support: Support = "binary"
    title = "Bernoulli"
    params_per_channel = 1

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # The stable fused form: never takes log(sigmoid(.)) of a saturated probability.
        return -sum_pixels(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))

    def least_negative_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The least -log p(x|z) any decoder output can reach, (B, C, H, W) -> (B,): H(x). What an
        item's -ELBO exceeds it by (`vaekit score --by excess`) is what the model has not learned."""
        return bernoulli_entropy(x)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)


SPECS = (
    MethodSpec(
        "bernoulli",
        "a mass on binary pixels (--binarize) or 0/1 columns; a cross-entropy on grey pixels",
        "https://arxiv.org/abs/1312.6114",
        lambda settings, context: BernoulliLikelihood(),
        offers=frozenset({"binary_values", "table_rows"}),
    ),
)
