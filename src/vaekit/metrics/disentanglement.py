"""Disentanglement metrics, defined as disentanglement_lib defines them (google-research/
disentanglement_lib, evaluation/metrics/), each a function of a representation table: the codes
(N, Z) of N items (posterior means) and their ground-truth factors (N, F), integer indices.

- β-VAE score (Higgins et al. 2017; beta_vae.py): batches of pairs that share one factor; the mean
  absolute difference of their codes, one point per batch; a logistic regression's accuracy at
  telling which factor was shared.
- FactorVAE score (Kim & Mnih 2018; factor_vae.py): codes scaled by their standard deviation over
  the data, dimensions whose spread is under 0.05 pruned; batches with one factor fixed; the
  dimension of least variance votes for that factor; the majority-vote classifier's accuracy.
- MIG (Chen et al. 2018; mig.py): each code discretised into 20 equal-width bins; the gap between
  the two codes with the most mutual information with a factor, over that factor's entropy.
- SAP (Kumar et al. 2018; sap_score.py): a linear SVM per (code, factor) on that code alone; per
  factor the gap between the two best accuracies.
- DCI (Eastwood & Williams 2018; dci.py): gradient-boosted trees per factor on all codes; their
  feature importances give disentanglement (each code explains one factor) and completeness (each
  factor is explained by one code); informativeness is the trees' test accuracy.

Sampling a batch "with factor k fixed" draws, for every row, an item that shares that row's value
of k: on a complete factor grid (dSprites) that is exactly the ground-truth process of
disentanglement_lib; on other data it keeps the data's own distribution of the other factors.
Codes are looked up, never recomputed, so every metric costs only its classifiers once the items
are encoded. Shapes: N items, Z codes, F factors, B a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vaekit.errors import VaekitError


def _sklearn() -> object:
    try:
        import sklearn  # a check: its modules are imported where used
    except ImportError:
        raise VaekitError(
            "the disentanglement metrics fit scikit-learn's classifiers: pip install 'vaekit[disentanglement]'"
        ) from None
    return sklearn


@dataclass(frozen=True)
class Representation:
    """Codes (N, Z) float and factors (N, F) int of the same N items."""

    codes: np.ndarray
    factors: np.ndarray
    # per factor: the items sorted by its value, and where each value's run starts and ends
    _groups: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or self.factors.ndim != 2 or len(self.codes) != len(self.factors):
            raise VaekitError(
                f"codes {self.codes.shape} and factors {self.factors.shape} must be (N, Z) and (N, F) for the same N"
            )

    def _group(self, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if factor not in self._groups:
            order = np.argsort(self.factors[:, factor], kind="stable")
            values = self.factors[order, factor]
            starts = np.searchsorted(values, values, side="left")  # per sorted item: its value's run
            ends = np.searchsorted(values, values, side="right")
            position = np.empty(len(order), dtype=np.int64)
            position[order] = np.arange(len(order))
            self._groups[factor] = (order, starts[position], ends[position])  # starts/ends by item
        return self._groups[factor]

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of `count` items drawn uniformly."""
        return rng.integers(0, len(self.codes), size=count)

    def sharing(self, rows: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
        """For each item in `rows`, another item with the same value of `factor`, drawn uniformly."""
        order, starts, ends = self._group(factor)
        return order[rng.integers(starts[rows], ends[rows])]

    def fixed(self, factor: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` items that all share one random value of `factor` (drawn as an item's value)."""
        anchor = np.full(count, rng.integers(0, len(self.factors)))
        return self.sharing(anchor, factor, rng)


# --- mutual information ---------------------------------------------------------------------------


def histogram_discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each code (column) into `bins` equal-width bins of its own range: (N, Z) -> (N, Z) ints."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer sequences, from their joint frequencies."""
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    joint = np.zeros((a_index.max() + 1, b_index.max() + 1))
    np.add.at(joint, (a_index, b_index), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_j; factor_k) in nats, (Z, F)."""
    return np.array(
        [
            [discrete_mutual_information(discrete_codes[:, j], factors[:, k]) for k in range(factors.shape[1])]
            for j in range(discrete_codes.shape[1])
        ]
    )


def information_shares(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(factor; z_j) / H(factor) of codes (N, Z) discretised in 20 bins, factors (N, F): (F, Z) in [0, 1]."""
    information = mutual_information_matrix(histogram_discretize(codes), factors).T  # (F, Z) nats
    entropy = np.array([discrete_mutual_information(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    return np.divide(information, entropy[:, None], out=np.zeros_like(information), where=entropy[:, None] > 0)


def mig(rep: Representation, rng: np.random.Generator, train: int = 10_000, bins: int = 20) -> dict[str, object]:
    """The mutual information gap, and the (Z, F) mutual information matrix behind it."""
    rows = rep.sample(train, rng)
    codes, factors = histogram_discretize(rep.codes[rows], bins), rep.factors[rows]
    matrix = mutual_information_matrix(codes, factors)
    entropy = np.array([discrete_mutual_information(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    if rep.codes.shape[1] < 2:
        raise VaekitError("MIG compares the two most informative codes: it needs a latent of at least 2 dimensions")
    top = np.sort(matrix, axis=0)[::-1]
    gaps = np.divide(top[0] - top[1], entropy, out=np.zeros_like(entropy), where=entropy > 0)
    return {
        "mig": float(gaps.mean()),
        "mutual_information_nats": matrix.tolist(),
        "factor_entropy_nats": entropy.tolist(),
    }


# --- classifier scores ----------------------------------------------------------------------------


def beta_vae_score(
    rep: Representation, rng: np.random.Generator, batch: int = 64, train: int = 10_000, test: int = 5_000
) -> dict[str, float]:
    _sklearn()
    from sklearn.linear_model import LogisticRegression

    def points(count: int) -> tuple[np.ndarray, np.ndarray]:
        features, labels = np.zeros((count, rep.codes.shape[1])), np.zeros(count, dtype=np.int64)
        for i in range(count):
            factor = int(rng.integers(0, rep.factors.shape[1]))
            first = rep.sample(batch, rng)
            second = rep.sharing(first, factor, rng)
            features[i] = np.abs(rep.codes[first] - rep.codes[second]).mean(0)
            labels[i] = factor
        return features, labels

    train_x, train_y = points(train)
    test_x, test_y = points(test)
    model = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    return {"train_accuracy": float(model.score(train_x, train_y)), "eval_accuracy": float(model.score(test_x, test_y))}


def factor_vae_score(
    rep: Representation,
    rng: np.random.Generator,
    batch: int = 64,
    train: int = 10_000,
    test: int = 5_000,
    variance_items: int = 10_000,
) -> dict[str, float]:
    scale = np.std(rep.codes[rep.sample(variance_items, rng)], axis=0, ddof=1)  # disentanglement_lib: ddof=1
    active = scale >= 0.05
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_codes": 0}
    factors = rep.factors.shape[1]

    def votes(count: int) -> np.ndarray:
        table = np.zeros((rep.codes.shape[1], factors), dtype=np.int64)
        for _ in range(count):
            factor = int(rng.integers(0, factors))
            rows = rep.fixed(factor, batch, rng)
            variances = np.var(rep.codes[rows] / scale, axis=0, ddof=1)
            table[int(np.argmin(np.where(active, variances, np.inf))), factor] += 1
        return table

    train_votes, test_votes = votes(train), votes(test)
    chosen = np.argmax(train_votes, axis=1)  # each code votes for the factor it most often marked
    codes = np.arange(rep.codes.shape[1])
    return {
        "train_accuracy": float(train_votes[codes, chosen].sum() / train_votes.sum()),
        "eval_accuracy": float(test_votes[codes, chosen].sum() / test_votes.sum()),
        "active_codes": int(active.sum()),
    }


def sap(rep: Representation, rng: np.random.Generator, train: int = 10_000, test: int = 5_000) -> dict[str, object]:
    _sklearn()
    from sklearn.svm import LinearSVC

    rows_train, rows_test = rep.sample(train, rng), rep.sample(test, rng)
    varied = varied_factors(rep.factors[rows_train])
    scores = np.zeros((rep.codes.shape[1], rep.factors.shape[1]))
    for j in range(rep.codes.shape[1]):
        for k in varied:
            model = LinearSVC(C=0.01, class_weight="balanced")
            model.fit(rep.codes[rows_train, j : j + 1], rep.factors[rows_train, k])
            scores[j, k] = np.mean(model.predict(rep.codes[rows_test, j : j + 1]) == rep.factors[rows_test, k])
    top = np.sort(scores[:, varied], axis=0)[::-1]
    gap = float((top[0] - top[1]).mean()) if top.shape[0] > 1 else 0.0
    return {"sap": gap, "score_matrix": scores.tolist(), "constant_factors": _constant(rep, varied)}


def varied_factors(factors: np.ndarray) -> list[int]:
    """The factors (columns of (N, F)) that take two values or more in these items: one that never
    varies has nothing to predict or to share, and is left out of the scores that fit classifiers."""
    varied = [k for k in range(factors.shape[1]) if np.unique(factors[:, k]).size > 1]
    if not varied:
        raise VaekitError("every factor takes a single value in these items: the metrics need factors that vary")
    return varied


def _constant(rep: Representation, varied: list[int]) -> list[int]:
    return [k for k in range(rep.factors.shape[1]) if k not in varied]


def _entropy(probabilities: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each column of (K, M) probabilities in base `base` (as scipy.stats.entropy)."""
    p = probabilities + 1e-11
    p = p / p.sum(0, keepdims=True)
    return -(p * np.log(p)).sum(0) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of a (Z, F) importance matrix (dci.py). With one factor
    (or one code) the entropy's base is 1: every code explains only that factor, a score of 1."""
    codes, factors = importance.shape
    per_code = 1.0 - _entropy(importance.T, base=factors) if factors > 1 else np.ones(codes)  # (Z,)
    code_weight = importance.sum(1) / importance.sum() if importance.sum() > 0 else np.ones(importance.shape[0])
    per_factor = 1.0 - _entropy(importance, base=codes) if codes > 1 else np.ones(factors)  # (F,)
    factor_weight = importance.sum(0) / importance.sum() if importance.sum() > 0 else np.ones(importance.shape[1])
    return float((per_code * code_weight).sum()), float((per_factor * factor_weight).sum())


def _boosted_trees(
    codes_train: np.ndarray, y_train: np.ndarray, codes_test: np.ndarray, y_test: np.ndarray, seed: int
) -> tuple[np.ndarray, float, float]:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(random_state=seed).fit(codes_train, y_train)
    return np.abs(model.feature_importances_), model.score(codes_train, y_train), model.score(codes_test, y_test)


def dci(rep: Representation, rng: np.random.Generator, train: int = 10_000, test: int = 5_000) -> dict[str, object]:
    """DCI from one gradient-boosted classifier per factor (scikit-learn's defaults, as dci.py),
    the factors fitted in parallel on every core: the trees are most of the metrics' cost."""
    _sklearn()
    from joblib import Parallel, delayed  # scikit-learn's own dependency

    rows_train, rows_test = rep.sample(train, rng), rep.sample(test, rng)
    seeds = [int(v) for v in np.asarray(rng.integers(0, 2**31, size=rep.factors.shape[1])).tolist()]
    varied = varied_factors(rep.factors[rows_train])
    fitted = Parallel(n_jobs=-1)(
        delayed(_boosted_trees)(
            rep.codes[rows_train],
            rep.factors[rows_train, k],
            rep.codes[rows_test],
            rep.factors[rows_test, k],
            int(seed),
        )
        for k, seed in enumerate(seeds)
        if k in varied
    )
    importance = np.zeros((rep.codes.shape[1], rep.factors.shape[1]))  # (Z, F): a constant factor's stays 0
    importance[:, varied] = np.stack([f[0] for f in fitted], axis=1)
    disentanglement, completeness = dci_from_importance(importance[:, varied])
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness_train": float(np.mean([f[1] for f in fitted])),
        "informativeness_test": float(np.mean([f[2] for f in fitted])),
        "importance_matrix": importance.tolist(),
        "constant_factors": _constant(rep, varied),
    }
