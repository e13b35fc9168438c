"""One-class anomaly detection on Fashion-MNIST, the way the literature benchmarks it: for each
class, train on that class's training images only, then score all 10,000 test images; AUROC of
telling the other nine classes (anomalies) from the class itself (normal). vaekit's three scores
side by side with two baselines from scikit-learn, PCA reconstruction error and IsolationForest,
fitted on the same images in the same run.

Every method is run from several seeds (0, 1, 2 by default) and the table gives each method's
AUROC averaged over them: one seed's figures differ by more than the gaps between the methods
(IsolationForest's mean over the ten classes moves by 0.004 between seeds). The VAE ensemble column
scores with the mean excess of the seeds' VAEs.

    python benchmarks/one_class.py                    # ten classes, three seeds: about 11 minutes on 2 cores
    python benchmarks/one_class.py --classes 0 1 --epochs 5 --seeds 0

Writes benchmarks/one_class.json and prints the table. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from vaekit.config import DataConfig
from vaekit.data import load_dataset
from vaekit.metrics.scores import score_items
from vaekit.training.api import fit

HERE = Path(__file__).resolve().parent
PCA_VARIANCE = 0.9  # components that keep 90% of the class's pixel variance
METHODS = ("vae_nelbo", "vae_iwae", "vae_recon", "vae_excess", "pca_recon", "isolation_forest")
ENSEMBLE = "vae_excess_ensemble"  # the mean excess of the VAEs trained from each seed


def auroc(scores: np.ndarray, anomalous: np.ndarray) -> float:
    """Area under the ROC curve with the anomalies as positives and higher scores as more anomalous."""
    return float(roc_auc_score(anomalous, scores))


def baselines(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """PCA reconstruction error and IsolationForest's anomaly score, fitted on the normal class."""
    pca = PCA(n_components=PCA_VARIANCE, random_state=seed).fit(train)
    pca_error = ((test - pca.inverse_transform(pca.transform(test))) ** 2).mean(axis=1)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(train)
    return {"pca_recon": pca_error, "isolation_forest": -forest.score_samples(test)}


def one_seed(
    label: int,
    seed: int,
    images: dict[str, np.ndarray],
    flat: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every method's score of each test image (N,), from one seed, and the seconds each side took.
    `flat` holds the same images as (N, 784) floats in [0, 1], the baselines' input."""
    normal_train = images["train"][labels["train"] == label]  # uint8 (6000, 1, 28, 28)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        run = fit(normal_train, out=f"{folder}/run", preset=args.preset, epochs=args.epochs, seed=seed)
        vae = score_items(run.model, images["test"], run.config.data, k=args.k, seed=seed)
    vae_seconds = time.perf_counter() - started
    started = time.perf_counter()
    others = baselines(flat["train"][labels["train"] == label], flat["test"], seed)
    baseline_seconds = time.perf_counter() - started
    assert vae.excess is not None  # the presets compared here are Bernoulli
    scores = {"vae_nelbo": vae.nelbo, "vae_iwae": vae.iwae, "vae_recon": vae.recon, "vae_excess": vae.excess, **others}
    return scores, {"vae": vae_seconds, "baselines": baseline_seconds}


def one_class(
    label: int,
    images: dict[str, np.ndarray],
    flat: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    anomalous = labels["test"] != label
    per_seed: dict[str, list[float]] = {name: [] for name in METHODS}
    excesses, seconds = [], []
    for seed in args.seeds:
        scores, took = one_seed(label, seed, images, flat, labels, args)
        for name in METHODS:
            per_seed[name].append(auroc(scores[name], anomalous))
        excesses.append(scores["vae_excess"])
        seconds.append(took)
    return {
        "auroc": {name: float(np.mean(values)) for name, values in per_seed.items()}
        | {ENSEMBLE: auroc(np.mean(excesses, axis=0), anomalous)},
        "auroc_per_seed": per_seed,
        "seconds_per_seed": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--preset", default="mlp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--k", type=int, default=100, help="importance samples for the IWAE score")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "one_class.json")
    args = parser.parse_args()
    splits = load_dataset(DataConfig(dataset="fashion-mnist", val_size=0), progress=False)
    images = {"train": splits.train.array, "test": splits.test.array}
    flat = {split: array.reshape(len(array), -1).astype(np.float32) / 255.0 for split, array in images.items()}
    labels = {"train": splits.train.labels, "test": splits.test.labels}
    assert labels["train"] is not None and labels["test"] is not None
    names = splits.class_names or tuple(str(c) for c in range(10))
    results: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}, "classes": {}}
    columns = (*METHODS, ENSEMBLE)
    print(f"AUROC, mean over seeds {args.seeds}")
    print(f"{'class':12s} " + " ".join(f"{m:>20s}" for m in columns))
    for label in args.classes:
        result = one_class(label, images, flat, labels, args)  # type: ignore[arg-type]
        results["classes"][names[label]] = result
        print(f"{names[label]:12s} " + " ".join(f"{result['auroc'][m]:20.4f}" for m in columns), flush=True)
    classes = results["classes"].values()
    means = {m: float(np.mean([r["auroc"][m] for r in classes])) for m in columns}
    # Each seed's mean over the classes: how far one seed's table can move.
    seed_means = {m: np.mean([r["auroc_per_seed"][m] for r in classes], axis=0).tolist() for m in METHODS}
    results["mean_auroc"] = means
    results["mean_auroc_per_seed"] = seed_means
    print(f"{'mean':12s} " + " ".join(f"{means[m]:20.4f}" for m in columns))
    for m in METHODS:
        print(f"{m}: mean over classes per seed " + ", ".join(f"{v:.4f}" for v in seed_means[m]))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
