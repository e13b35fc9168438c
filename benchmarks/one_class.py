"""One-class anomaly detection on Fashion-MNIST, the way the literature benchmarks it: for each
class, train on that class's training images only, then score all 10,000 test images; AUROC of
telling the other nine classes (anomalies) from the class itself (normal). vaekit's scores side
by side with two baselines from scikit-learn, PCA reconstruction error and IsolationForest,
fitted on the same training images as each VAE.

The VAEs are the study benchmarks/studies/one_class.toml (ten classes, three seeds), trained and
evaluated by `vaekit sweep`; each run's eval.json holds its scores' AUROCs. This script reads
them (through `vaekit.compare`), fits the baselines on each run's training split with the run's
seed, and adds an ensemble column: the mean excess of the three seeds' VAEs. The table gives each
method's AUROC averaged over the seeds: one seed's figures differ by more than the gaps between
the methods.

    vaekit sweep benchmarks/studies/one_class.toml --out studies/one-class --workers 2
    python benchmarks/one_class.py studies/one-class

Writes benchmarks/one_class.json and prints the table. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from vaekit import compare
from vaekit.loading import load_run
from vaekit.metrics.scores import auroc, score_by

HERE = Path(__file__).resolve().parent
PCA_VARIANCE = 0.9  # components that keep 90% of the class's pixel variance
VAE_SCORES = ("nelbo", "iwae", "recon", "excess")
METHODS = (*(f"vae_{name}" for name in VAE_SCORES), "pca_recon", "isolation_forest")
ENSEMBLE = "vae_excess_ensemble"  # the mean excess of the VAEs trained from each seed


def flat(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 1, 28, 28) -> float (N, 784) in [0, 1], the baselines' input."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def baselines(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """PCA reconstruction error and IsolationForest's anomaly score, fitted on the normal class."""
    pca = PCA(n_components=PCA_VARIANCE, random_state=seed).fit(train)
    pca_error = ((test - pca.inverse_transform(pca.transform(test))) ** 2).mean(axis=1)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(train)
    return {"pca_recon": pca_error, "isolation_forest": -forest.score_samples(test)}


def one_run(folder: Path, figures: dict[str, float]) -> tuple[dict[str, float], np.ndarray, float]:
    """One seed of one class: every method's AUROC (the VAE's from its evaluation, the baselines'
    fitted here on its training split), its excess per test image for the ensemble, and the
    baselines' seconds."""
    run = load_run(folder)
    splits = run.load_data()
    assert splits.test.labels is not None and run.config.data.normal_classes is not None
    anomalous = ~np.isin(splits.test.labels, run.config.data.normal_classes)
    seed = run.config.train.seed
    started = time.perf_counter()
    others = baselines(flat(splits.train.array), flat(splits.test.array), seed)
    seconds = time.perf_counter() - started
    aurocs = {f"vae_{name}": figures[f"eval.anomaly.auroc_{name}"] for name in VAE_SCORES}
    aurocs |= {name: auroc(scores, anomalous) for name, scores in others.items()}
    excess = score_by("excess", run.model, splits.test.array, run.config.data, k=1, seed=0)
    return aurocs, excess, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the study folder `vaekit sweep` wrote")
    parser.add_argument("--out", type=Path, default=HERE / "one_class.json")
    args = parser.parse_args()
    table = compare([args.study])
    by_class: dict[tuple[int, ...], list[Any]] = {}
    for run in table.runs:
        by_class.setdefault(tuple(run.settings["data.normal_classes"]), []).append(run)
    results: dict[str, Any] = {"study": str(args.study), "classes": {}}
    columns = (*METHODS, ENSEMBLE)
    print(f"{'class':12s} " + " ".join(f"{m:>20s}" for m in columns))
    for classes, runs in sorted(by_class.items()):
        per_seed: dict[str, list[float]] = {name: [] for name in METHODS}
        excesses, seconds = [], []
        for compared in sorted(runs, key=lambda r: r.settings["train.seed"]):
            aurocs, excess, took = one_run(compared.path, compared.figures)
            for name in METHODS:
                per_seed[name].append(aurocs[name])
            excesses.append(excess)
            seconds.append(took)
        test = load_run(runs[0].path).load_data()
        assert test.test.labels is not None
        name = ",".join((test.class_names or tuple(map(str, range(10))))[c] for c in classes)
        mean = {m: float(np.mean(v)) for m, v in per_seed.items()}
        mean[ENSEMBLE] = auroc(np.mean(excesses, axis=0), ~np.isin(test.test.labels, classes))
        seeds = [r.settings["train.seed"] for r in runs]
        results["classes"][name] = {
            "auroc": mean,
            "auroc_per_seed": per_seed,
            "seeds": sorted(seeds),
            "baseline_seconds": seconds,
        }
        print(f"{name:12s} " + " ".join(f"{mean[m]:20.4f}" for m in columns), flush=True)
    chosen = results["classes"].values()
    results["mean_auroc"] = {m: float(np.mean([r["auroc"][m] for r in chosen])) for m in columns}
    # each seed's mean over the classes that have every seed (a study still running has some with
    # fewer): how far one seed's table can move
    seeds = max((r["seeds"] for r in chosen), key=len)
    complete = [r for r in chosen if r["seeds"] == seeds]
    results["mean_auroc_per_seed"] = {
        m: np.mean([r["auroc_per_seed"][m] for r in complete], axis=0).tolist() for m in METHODS
    }
    results["classes_with_every_seed"] = len(complete)
    print(f"{'mean':12s} " + " ".join(f"{results['mean_auroc'][m]:20.4f}" for m in columns))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
