"""Anomaly scores per item: the negative ELBO, the IWAE estimate of -log p(x) and the
reconstruction error, each higher for items the model finds less typical, and a threshold set
from the validation split at a chosen false-positive rate. For a Bernoulli likelihood also the
excess: -ELBO minus the least cross-entropy any Bernoulli could give the item, H(x).

Why the excess: on grey pixels the Bernoulli's figure is a cross-entropy, and H(x), the part no
model can remove, is large for images with much grey ink and near zero for dark ones; ranked by
-ELBO, a sparse image from another class looks typical (the failure Nalisnick et al. 2019
describe). Subtracting the item's own floor leaves what the model fails to explain, much as a
complexity correction does (Serra et al. 2020, https://arxiv.org/abs/1909.11480), with the
likelihood's exact floor in place of a compressor's length. On binary pixels H(x) = 0 and the
excess is -ELBO.

The per-item figures are computed exactly as `vaekit evaluate` computes its set figures (same
seeds, same batches), so a score file's mean equals the evaluation's number.

Shapes: N items, (C, H, W) item.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaekit.atomic import write_text
from vaekit.config import DataConfig
from vaekit.data.transforms import labelled_batches, model_batches
from vaekit.errors import VaekitError
from vaekit.metrics.elbo import elbo_terms_per_item
from vaekit.metrics.likelihood import iwae_per_item
from vaekit.models import VAE

# The batch sizes `vaekit evaluate` uses (evaluation.py reads them here), so per-item figures match
# its set figures.
ELBO_BATCH = 1000
IWAE_BATCH = 100


@dataclass(frozen=True)
class ItemScores:
    """Per item, float64 (N,): -ELBO and the IWAE -log p(x) estimate in nats (what kind of nats
    the run's figure meaning says), and the mean squared reconstruction error per dimension in
    the model's scale (pixels in [0, 1] or [-1, 1], a table's standardised features)."""

    nelbo: np.ndarray
    iwae: np.ndarray
    recon: np.ndarray
    k: int
    excess: np.ndarray | None = None  # -ELBO - H(x), nats; Bernoulli runs only

    def by(self, name: str) -> np.ndarray:
        chosen = {"nelbo": self.nelbo, "iwae": self.iwae, "recon": self.recon, "excess": self.excess}[name]
        if chosen is None:
            raise VaekitError("these scores have no excess: it is defined for a Bernoulli likelihood only")
        return chosen


SCORES = ("nelbo", "iwae", "recon", "excess")


def has_excess(model: VAE) -> bool:
    """Whether the run's likelihood knows the least -log p(x|z) any decoder can reach (the
    Bernoulli's: H(x)), which the excess score is measured from."""
    return hasattr(model.likelihood, "least_negative_log_prob")


def cross_entropy_floor(model: VAE, items: np.ndarray, data: DataConfig, batch_size: int = ELBO_BATCH) -> np.ndarray:
    """The least -log p(x|z) per item in nats, (N,), for a likelihood that has one (zero for a
    Bernoulli on binary pixels, dynamically binarised ones included)."""
    if data.binarize:
        return np.zeros(len(items))
    least = model.likelihood.least_negative_log_prob  # type: ignore[attr-defined]  # has_excess checked it
    floors = [least(x).double().cpu() for x in model_batches(items, data, batch_size, torch.device("cpu"))]
    return torch.cat(floors).numpy() if floors else np.zeros(0)


@torch.inference_mode()
def reconstruction_error(
    model: VAE,
    items: np.ndarray,
    data: DataConfig,
    batch_size: int = ELBO_BATCH,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Mean over dimensions of (x - E[x|z = posterior mean])^2 per item, (N,)."""
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    batches = labelled_batches(items, labels, data, batch_size, model.device, generator)
    # a table's empty cells (NaN) are left out: the mean is over each row's observed cells
    errors = [(x - model.reconstruct(x, y)).pow(2).flatten(1).nanmean(1).double().cpu() for x, y in batches]
    return torch.cat(errors).numpy() if errors else np.zeros(0)


def score_by(
    name: str,
    model: VAE,
    items: np.ndarray,
    data: DataConfig,
    k: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """One score per item, (N,): one of SCORES (see ItemScores). `labels`: a conditional model's
    labels for the items, else None."""
    if name in ("nelbo", "excess"):
        if name == "excess" and not has_excess(model):
            raise VaekitError(
                f"--by excess is the Bernoulli cross-entropy above its floor, and this run's likelihood is "
                f"{model.likelihood.title}: use nelbo, iwae or recon"
            )
        recon_nats, kl_nats = elbo_terms_per_item(model, items, data, ELBO_BATCH, seed, labels)
        nelbo = (recon_nats + kl_nats).numpy()
        return nelbo - cross_entropy_floor(model, items, data) if name == "excess" else nelbo
    if name == "iwae":
        return (-iwae_per_item(model, items, data, k, IWAE_BATCH, seed, labels)).numpy()
    return reconstruction_error(model, items, data, seed=seed, labels=labels)


def score_items(
    model: VAE, items: np.ndarray, data: DataConfig, k: int, seed: int = 0, labels: np.ndarray | None = None
) -> ItemScores:
    names = ("nelbo", "iwae", "recon")
    nelbo, iwae, recon = (score_by(name, model, items, data, k, seed, labels) for name in names)
    excess = nelbo - cross_entropy_floor(model, items, data) if has_excess(model) else None
    return ItemScores(nelbo, iwae, recon, k, excess)


def auroc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve of telling the `anomalous` items (bool (N,)) from the others by
    `scores` (N,), higher meaning more anomalous: the chance that a random anomaly scores above a
    random normal item, ties counting half (the Mann-Whitney U over average ranks)."""
    positives = int(anomalous.sum())
    negatives = len(anomalous) - positives
    if positives == 0 or negatives == 0:
        raise VaekitError("an AUROC needs both normal and anomalous items: the evaluated set has only one kind")
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of each distinct score's first item
    ranks = (first_rank + (counts - 1) / 2.0)[group]  # tied items share their ranks' mean
    u = ranks[anomalous].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def check_fpr(fpr: float) -> None:
    if not 0.0 < fpr < 1.0:
        raise VaekitError(f"--threshold-fpr {fpr} must lie strictly between 0 and 1, e.g. 0.01")


def threshold_at_fpr(validation_scores: np.ndarray, fpr: float) -> float:
    """The score above which a fraction `fpr` of the validation items lie (they are taken as
    normal, so that fraction is the false-positive rate); the (1 - fpr) quantile."""
    check_fpr(fpr)
    if len(validation_scores) == 0:
        raise VaekitError("the run has no validation split (--val-size 0) to set a threshold from")
    return float(np.quantile(validation_scores, 1.0 - fpr, method="higher"))


def write_scores(
    path: str | Path,
    scores: ItemScores,
    labels: np.ndarray | None,
    flagged: np.ndarray | None,
) -> None:
    """One CSV row per item: index[, label], nelbo_nats, iwae_nats_k<K>, recon_mse[, excess_nats]
    [, anomalous]."""
    header = ["index", *(["label"] if labels is not None else [])]
    header += [
        "nelbo_nats",
        f"iwae_nats_k{scores.k}",
        "recon_mse",
        *(["excess_nats"] if scores.excess is not None else []),
    ]
    header += ["anomalous"] if flagged is not None else []
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    for i in range(len(scores.nelbo)):
        row: list[object] = [i, *([int(labels[i])] if labels is not None else [])]
        row += [f"{scores.nelbo[i]:.6f}", f"{scores.iwae[i]:.6f}", f"{scores.recon[i]:.7g}"]
        if scores.excess is not None:
            row.append(f"{scores.excess[i]:.6f}")
        if flagged is not None:
            row.append(int(flagged[i]))
        writer.writerow(row)
    write_text(path, text.getvalue())
