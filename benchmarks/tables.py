"""Real mixed-type tables, side by side in one run: synthetic rows (vaekit against SDV's TVAE) and
imputation (vaekit's MIWAE against mean/mode, k-NN, MICE and a missForest-style imputer).

Tables (each shipped offline by a PyPI package, typed by vaekit from its values):
- `penguins`: Palmer penguins (palmerpenguins; 344 rows, 3 categories, 5 numbers, empty cells);
  machine-learning target `species`;
- `diamonds`: ggplot2's diamonds (the CSV plotnine ships; 53,940 rows, 3 ordered categories,
  7 numbers); target `price`;
- `txhousing`: Texas housing sales (plotnine; 8,602 rows, a city category of 46 values, numbers
  with empty cells); target `median`;
- `breast-cancer`: scikit-learn's (569 rows, 30 numbers), for imputation only: MIWAE's paper
  uses it.

Synthetic data, per table and seed (3 seeds): each method is fitted on the same 80% of the rows
and draws as many rows; then SDMetrics' quality report (column shapes, column-pair trends) against
the training rows, machine-learning efficacy (scikit-learn's HistGradientBoosting trained on the
synthetic rows and scored on the real held-out 20%: accuracy or R^2; beside the same model trained
on the real rows), a privacy check (the median distance of each synthetic row to its closest real
training row, over the same for real held-out rows: below 1, rows sit closer to the training rows
than new real ones do), and wall time. Methods: `vaekit` (the `table` preset, its per-column
likelihood, 300 epochs, rows drawn from p(x|z)) and `tvae` (SDV's defaults: also 300 epochs).
A method's name may carry settings that change its defaults, recorded under that name:
`vaekit:number_modes=3,epochs=100`, `tvae:epochs=100`.

Imputation, per table, rate (20% and 50% of the cells removed completely at random) and seed:
each method fills the same incomplete table (MIWAE trains on it, as the paper does); RMSE over
the removed number cells (standardised by the complete column's standard deviation) and accuracy
over the removed category cells.

Resumable: every finished (part, table, method, seed) is written to benchmarks/tables.json as it
finishes and skipped when run again.

    python benchmarks/tables.py                         # everything
    python benchmarks/tables.py --tables penguins --parts synthetic
    python benchmarks/tables.py --table                 # the Markdown tables of what is recorded

Needs the benchmark extra: pip install sdv palmerpenguins scikit-learn, and plotnine (its CSV
files only: pip install --no-deps plotnine). Not part of the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
RATES = (0.2, 0.5)
TARGETS = {"penguins": "species", "diamonds": "price", "txhousing": "median"}
SYNTHETIC_TABLES = tuple(TARGETS)
IMPUTATION_TABLES = ("penguins", "diamonds", "txhousing", "breast-cancer")
IMPUTE_K = 100  # importance samples per row when imputing
# MIWAE's training (Mattei & Frellsen 2019): the importance-weighted bound of the observed cells
# with K = 20, for about 3,000 steps of 64 rows whatever the table's size (at 50% missing on
# penguins, seed 0: RMSE 0.768 with the table preset's ELBO and 100 epochs, 0.665 with this)
MIWAE_SETTINGS = {"objective": "iwae", "iwae_samples": 20}
MIWAE_STEPS = 3000
# Imputation on diamonds uses a fixed 10,000 of its 53,940 rows: k-NN's distances grow with the
# rows squared and the missForest-style imputer fits 50 trees per column and round on every row
# (hours on 2 cores for 6 runs); the synthetic part uses every row.
IMPUTATION_ROWS = {"diamonds": 10_000}


def _plotnine_csv(name: str) -> pd.DataFrame:
    """A CSV plotnine ships, read without importing plotnine (it would import its plotting stack)."""
    spec = importlib.util.find_spec("plotnine")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("plotnine is not installed: pip install --no-deps plotnine (its data files are what is used)")
    return pd.read_csv(Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.csv")


def load_table(name: str) -> pd.DataFrame:
    if name == "penguins":
        import palmerpenguins

        return palmerpenguins.load_penguins()
    if name == "diamonds":
        return _plotnine_csv("diamonds")
    if name == "txhousing":
        return _plotnine_csv("txhousing").drop(columns=["date"])  # date is year + month / 12
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        return load_breast_cancer(as_frame=True).data
    raise SystemExit(f"unknown table {name}")


def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """80% training rows, 20% held out, by a fixed seed per table (the same for every method)."""
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(0.8 * len(frame))
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


# ---------------------------------------------------------------------------- synthetic rows


def vaekit_settings(method: str) -> dict[str, Any]:
    """The settings a method's name carries beyond its defaults: `vaekit:number_modes=5` -> {number_modes: 5}."""
    _, _, given = method.partition(":")
    pairs = [pair.split("=", 1) for pair in given.split(",") if pair]
    return {name: _value(text) for name, text in pairs}


def _value(text: str) -> Any:
    """A number or boolean as JSON reads it, anything else as the text itself (`prior=vamp`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def fit_vaekit(train: pd.DataFrame, seed: int, **settings: Any) -> Callable[[int], pd.DataFrame]:
    import vaekit

    folder = tempfile.mkdtemp(prefix="vaekit-tables-")
    run = vaekit.fit(train, out=f"{folder}/run", seed=seed, val_size=0, **settings)
    return lambda n: run.sample_rows(n, seed=seed, draw=True)


def sdv_metadata(frame: pd.DataFrame) -> Any:
    """SDV's metadata of one table, its column types detected from the data (no keys: every
    column is data)."""
    from sdv.metadata import Metadata

    return Metadata.detect_from_dataframes({"table": frame}, infer_keys=None)


def fit_tvae(train: pd.DataFrame, seed: int, epochs: int | None) -> Callable[[int], pd.DataFrame]:
    import torch
    from sdv.single_table import TVAESynthesizer

    torch.manual_seed(seed)
    np.random.seed(seed)
    synthesizer = TVAESynthesizer(sdv_metadata(train), **({} if epochs is None else {"epochs": epochs}))
    synthesizer.fit({"table": train})  # SDV 2: every synthesizer takes {table name: DataFrame}
    return lambda n: synthesizer.sample(num_rows=n)["table"]


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """SDMetrics' quality report: the overall score and its two properties, each in [0, 1]."""
    from sdmetrics.reports.single_table import QualityReport

    metadata = sdv_metadata(real).to_dict()["tables"]["table"]
    report = QualityReport()
    report.generate(real, synthetic[real.columns], metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    return {
        "quality_score": float(report.get_score()),
        "column_shapes": float(properties["Column Shapes"]),
        "column_pair_trends": float(properties["Column Pair Trends"]),
    }


def _features(train: pd.DataFrame, frames: list[pd.DataFrame]) -> list[np.ndarray]:
    """Rows as numbers for distances and models: numbers standardised by the training rows,
    categories one-hot over the training rows' values, empty cells at the column's mean (0)."""
    numbers = [c for c in train.columns if pd.api.types.is_numeric_dtype(train[c]) and train[c].dtype != bool]
    categories = [c for c in train.columns if c not in numbers]
    mean, std = train[numbers].mean(), train[numbers].std().replace(0, 1)
    out = []
    for frame in frames:
        parts = [((frame[numbers].astype(float) - mean) / std).fillna(0.0).to_numpy()]
        for column in categories:
            values = train[column].dropna().astype(str).unique()
            cells = frame[column].astype(str).to_numpy()
            parts.append((cells[:, None] == values[None, :]).astype(float))
        out.append(np.concatenate(parts, axis=1))
    return out


def privacy(train: pd.DataFrame, held_out: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """Distance to the closest training row: synthetic rows' median over held-out real rows'."""
    from sklearn.neighbors import NearestNeighbors

    base, real_new, fake = _features(train, [train, held_out, synthetic])
    nearest = NearestNeighbors(n_neighbors=1).fit(base)
    fake_distance = float(np.median(nearest.kneighbors(fake[:5000])[0]))
    real_distance = float(np.median(nearest.kneighbors(real_new)[0]))
    return {"dcr_synthetic": fake_distance, "dcr_held_out": real_distance, "dcr_ratio": fake_distance / real_distance}


def efficacy(train: pd.DataFrame, held_out: pd.DataFrame, target: str) -> float:
    """A gradient-boosted model trained on `train`'s rows, scored on the real held-out rows:
    accuracy for a category target, R^2 for a number."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score

    train, held_out = train.dropna(subset=[target]), held_out.dropna(subset=[target])
    inputs = [c for c in train.columns if c != target]
    x_train, x_test = _features(train[inputs], [train[inputs], held_out[inputs]])
    classify = not pd.api.types.is_numeric_dtype(held_out[target])
    if classify:
        model = HistGradientBoostingClassifier(random_state=0).fit(x_train, train[target].astype(str))
        return float(accuracy_score(held_out[target].astype(str), model.predict(x_test)))
    model = HistGradientBoostingRegressor(random_state=0).fit(x_train, train[target].astype(float))
    return float(r2_score(held_out[target].astype(float), model.predict(x_test)))


def synthetic_run(table: str, method: str, seed: int) -> dict[str, Any]:
    frame = load_table(table)
    train, held_out = split(frame)
    started = time.perf_counter()
    if method.startswith("vaekit"):
        sample = fit_vaekit(train, seed, **vaekit_settings(method))
    else:
        sample = fit_tvae(train, seed, vaekit_settings(method).get("epochs"))
    fit_seconds = time.perf_counter() - started
    synthetic = sample(len(train))
    target = TARGETS[table]
    return {
        **quality(train, synthetic),
        "efficacy": efficacy(synthetic, held_out, target),
        "efficacy_real": efficacy(train, held_out, target),
        "efficacy_metric": "accuracy" if not pd.api.types.is_numeric_dtype(frame[target]) else "r2",
        **privacy(train, held_out, synthetic),
        "fit_seconds": fit_seconds,
        "rows": len(train),
    }


# ---------------------------------------------------------------------------- imputation


def remove_cells(frame: pd.DataFrame, rate: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """`rate` of the observed cells removed completely at random (no row left with none), and the mask."""
    rng = np.random.default_rng(seed)
    gone = (rng.random(frame.shape) < rate) & frame.notna().to_numpy()
    emptied = np.flatnonzero(gone.all(axis=1))
    gone[emptied, rng.integers(0, frame.shape[1], len(emptied))] = False  # keep one cell of every row
    return frame.mask(gone), gone


def impute_baseline(frame: pd.DataFrame, method: str, seed: int) -> pd.DataFrame:
    """mean/mode, k-NN, MICE (IterativeImputer, BayesianRidge) or missForest-style
    (IterativeImputer with random forests); categories as integer codes, rounded back."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401  # makes IterativeImputer importable
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    numbers = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool]
    categories = [c for c in frame.columns if c not in numbers]
    coded = frame.copy()
    levels = {}
    for column in categories:
        codes, uniques = pd.factorize(frame[column])
        levels[column] = uniques
        coded[column] = np.where(codes < 0, np.nan, codes)
    values = coded.astype(float).to_numpy()
    if method == "mean":
        filled = values.copy()
        for j, column in enumerate(coded.columns):
            fill = SimpleImputer(strategy="most_frequent" if column in categories else "mean")
            filled[:, j] = fill.fit_transform(values[:, [j]])[:, 0]
    else:
        scale = np.nanstd(values, axis=0)
        scale[scale == 0] = 1.0
        center = np.nanmean(values, axis=0)
        standard = (values - center) / scale
        imputer = {
            "knn": lambda: KNNImputer(n_neighbors=5),
            "mice": lambda: IterativeImputer(max_iter=10, random_state=seed, sample_posterior=False),
            "missforest": lambda: IterativeImputer(
                estimator=RandomForestRegressor(n_estimators=50, n_jobs=1, random_state=seed),
                max_iter=5,
                random_state=seed,
            ),
        }[method]()
        filled = imputer.fit_transform(standard) * scale + center
    out = frame.copy()
    for j, column in enumerate(coded.columns):
        if column in categories:
            codes = np.clip(np.rint(filled[:, j]), 0, len(levels[column]) - 1).astype(int)
            out[column] = np.asarray(levels[column], dtype=object)[codes]
        else:
            out[column] = filled[:, j]
    return out


def impute_vaekit(frame: pd.DataFrame, seed: int, **settings: Any) -> pd.DataFrame:
    import vaekit

    folder = tempfile.mkdtemp(prefix="vaekit-impute-")
    epochs = max(3, -(-MIWAE_STEPS * 64 // len(frame)))
    chosen = {**MIWAE_SETTINGS, **settings}
    run = vaekit.fit(frame, out=f"{folder}/run", seed=seed, val_size=0, epochs=epochs, **chosen)
    return run.impute(frame, k=IMPUTE_K, seed=seed)


def imputation_table(table: str) -> pd.DataFrame:
    """The complete table that imputation removes cells from: every row, or a fixed sample of
    IMPUTATION_ROWS (the same for every method, rate and seed)."""
    frame = load_table(table)
    rows = IMPUTATION_ROWS.get(table)
    if rows is None or rows >= len(frame):
        return frame
    return frame.sample(n=rows, random_state=0).reset_index(drop=True)


def imputation_run(table: str, rate: float, method: str, seed: int) -> dict[str, Any]:
    complete = imputation_table(table)
    holed, gone = remove_cells(complete, rate, seed)
    started = time.perf_counter()
    if method.startswith("vaekit"):
        filled = impute_vaekit(holed, seed, **vaekit_settings(method))
    else:
        filled = impute_baseline(holed, method, seed)
    seconds = time.perf_counter() - started
    errors, hits = [], []
    for j, column in enumerate(complete.columns):
        rows = gone[:, j]
        if not rows.any():
            continue
        truth, guess = complete[column][rows], filled[column][rows]
        if pd.api.types.is_numeric_dtype(complete[column]) and complete[column].dtype != bool:
            errors.append(((guess.astype(float) - truth) / complete[column].std()).to_numpy())
        else:
            hits.append(guess.astype(str).to_numpy() == truth.astype(str).to_numpy())
    return {
        "rmse": float(np.sqrt(np.mean(np.concatenate(errors) ** 2))) if errors else None,
        "accuracy": float(np.mean(np.concatenate(hits))) if hits else None,
        "cells_removed": int(gone.sum()),
        "seconds": seconds,
    }


# ---------------------------------------------------------------------------- records and tables


def recorded(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"synthetic": {}, "imputation": {}}


def record(path: Path, part: str, key: str, entry: dict[str, Any]) -> None:
    from vaekit.atomic import write_json

    results = recorded(path)
    results.setdefault(part, {})[key] = entry
    write_json(path, results)


def _cell(values: list[float], digits: int = 3) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _methods(runs: dict[str, Any], prefix: str, order: tuple[str, ...]) -> list[str]:
    """The methods recorded under `prefix`, in `order` with vaekit's variants after vaekit."""
    found = {key[len(prefix) :].rsplit("/", 1)[0] for key in runs if key.startswith(prefix)}
    rank = {method: i for i, method in enumerate(order)}
    return sorted(found, key=lambda m: (rank.get(m.partition(":")[0], len(order)), m))


def render(results: dict[str, Any]) -> str:
    lines = [
        "| table | method | seeds | quality | column shapes | pair trends | ML efficacy (real) | DCR ratio | fit (s) |"
    ]
    lines.append("|" + " --- |" * 9)
    runs = results.get("synthetic", {})
    for table in SYNTHETIC_TABLES:
        for method in _methods(runs, f"{table}/", ("vaekit", "tvae")):
            mine = [r for k, r in runs.items() if k.startswith(f"{table}/{method}/")]
            if not mine:
                continue
            cells = [_cell([r[k] for r in mine]) for k in ("quality_score", "column_shapes", "column_pair_trends")]
            efficacy_cell = (
                f"{_cell([r['efficacy'] for r in mine])} ({mine[0]['efficacy_real']:.3f} {mine[0]['efficacy_metric']})"
            )
            lines.append(
                f"| {table} | {method} | {len(mine)} | {' | '.join(cells)} | {efficacy_cell} | "
                f"{_cell([r['dcr_ratio'] for r in mine], 2)} | {_cell([r['fit_seconds'] for r in mine], 0)} |"
            )
    lines += ["", "| table | missing | method | seeds | RMSE (numbers, standardised) | accuracy (categories) |"]
    lines.append("|" + " --- |" * 6)
    runs = results.get("imputation", {})
    for table in IMPUTATION_TABLES:
        for rate in RATES:
            for method in _methods(runs, f"{table}/{rate}/", ("mean", "knn", "mice", "missforest", "vaekit")):
                mine = [r for k, r in runs.items() if k.startswith(f"{table}/{rate}/{method}/")]
                if mine:
                    rmse = _cell([r["rmse"] for r in mine if r["rmse"] is not None])
                    accuracy = _cell([r["accuracy"] for r in mine if r["accuracy"] is not None])
                    lines.append(f"| {table} | {rate:.0%} | {method} | {len(mine)} | {rmse} | {accuracy} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["synthetic", "imputation"], default=["synthetic", "imputation"])
    parser.add_argument("--tables", nargs="+", default=None, help="default: every table of each part")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method of each part")
    parser.add_argument("--out", type=Path, default=HERE / "tables.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown tables of what is recorded")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.table:
        print(render(recorded(args.out)))
        return
    from suite import machine

    if "synthetic" in args.parts:
        for table in args.tables or SYNTHETIC_TABLES:
            if table not in SYNTHETIC_TABLES:
                continue
            for method in args.methods or ("vaekit", "tvae"):
                for seed in args.seeds:
                    key = f"{table}/{method}/{seed}"
                    if key in recorded(args.out).get("synthetic", {}):
                        continue
                    entry = {**synthetic_run(table, method, seed), "machine": machine()}
                    record(args.out, "synthetic", key, entry)
                    print(f"{key}: quality {entry['quality_score']:.3f}, efficacy {entry['efficacy']:.3f}, "
                          f"{entry['fit_seconds']:.0f} s", flush=True)  # fmt: skip
    if "imputation" in args.parts:
        for table in args.tables or IMPUTATION_TABLES:
            if table not in IMPUTATION_TABLES:
                continue
            for rate in RATES:
                for method in args.methods or ("mean", "knn", "mice", "missforest", "vaekit"):
                    for seed in args.seeds:
                        key = f"{table}/{rate}/{method}/{seed}"
                        if key in recorded(args.out).get("imputation", {}):
                            continue
                        entry = {**imputation_run(table, rate, method, seed), "machine": machine()}
                        record(args.out, "imputation", key, entry)
                        print(f"{key}: RMSE {entry['rmse']}, accuracy {entry['accuracy']}", flush=True)


if __name__ == "__main__":
    main()
