"""The VQ-VAE's own section of `vaekit evaluate` (its spec's "evaluation" hook, models/vq.py): how
its codes are used over the evaluated items, in place of active units, which mean nothing for
discrete codes. Shapes: N items, M codes per item."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.codes import encode_items
from vaekit.posteriors.vq import perplexity


@dataclass(frozen=True)
class CodebookSection:
    key: str = "codebook"

    def measure(self, given: Any) -> dict[str, Any]:
        """How many of the K codes the items use, their perplexity (exp of the entropy of their
        frequencies), and which prior the figures' rate is under."""
        model = given.run.model
        codes = encode_items(model, np.asarray(given.chosen.images), given.run.config.data, seed=given.seed)
        counts = torch.bincount(torch.from_numpy(codes.named["z_codes"]).flatten(), minlength=model.codebook.size)
        return {
            "size": model.codebook.size,
            "codes_per_item": model.layout.count,
            "codes_used": int((counts > 0).sum()),
            "perplexity": float(perplexity(counts.double())),
            "prior": "learned" if model.code_prior.trained else "uniform",
            "prior_steps": int(model.code_prior.trained_steps),
            "uniform_rate_nats": model.layout.count * math.log(model.codebook.size),
        }

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        prior = (
            f"learned ({figures['prior_steps']} steps)"
            if figures["prior"] == "learned"
            else f"uniform, {figures['uniform_rate_nats']:.2f} nats per item (vaekit train-prior learns one)"
        )
        used = f"{figures['codes_used']} of {figures['size']} codes used, perplexity {figures['perplexity']:.1f}"
        return [("codebook", used), ("  prior over codes", prior)]


CODEBOOK = CodebookSection()
