"""The user's own vectors: a table of numeric columns (.csv), a 2-D array (.npy/.npz, or from
Python), one item per row.

A table is stored as float32 (N, 1, 1, D): a one-row "image" of D features. The models, the loop
and the metrics then take vectors unchanged (the MLP flattens (1, 1, D) to D; a per-pixel
variance is a per-feature one), and the data's kind is read off its dtype: uint8 images, float
features. Features are standardised per batch with statistics fitted on the training split
(`fit_scaling`), which the run config stores, so every later use works in the user's units.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.atomic import write_bytes, write_text
from vaekit.config import RunConfig
from vaekit.errors import VaekitError
from vaekit.methods import providers

MIN_ROWS = 3  # one each for training, validation and test
# A feature whose training-split spread is below this (relative to its size) is constant in effect:
# standardising it would divide by (almost) zero.
RELATIVE_SPREAD_FLOOR = 1e-6


@dataclass(frozen=True)
class Table:
    """Features float32 (N, D) with their column names, and labels int64 (N,) or None."""

    features: np.ndarray
    columns: tuple[str, ...]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None

    def as_items(self) -> np.ndarray:
        """(N, D) -> (N, 1, 1, D), the stored layout."""
        return np.ascontiguousarray(self.features[:, None, None, :])


def default_columns(count: int) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(count))


def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _label_codes(values: list[str], column: str, source: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A label column's cells -> int64 codes; integers stay themselves, text becomes class names."""
    if all(_parse_number(v) is not None and float(v).is_integer() for v in values):
        return np.array([int(float(v)) for v in values], dtype=np.int64), None
    names = tuple(sorted(set(values)))
    if "" in names:
        row = values.index("") + 2
        raise VaekitError(f"{source}: line {row} has no label in column {column!r}: every row needs one")
    code = {name: i for i, name in enumerate(names)}
    return np.array([code[v] for v in values], dtype=np.int64), names


def read_csv_table(path: str | Path, label_column: str | None = None) -> Table:
    """A CSV file of numbers with an optional header row -> Table. Every problem names its line
    (as an editor counts them) and column."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [
                (number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)
            ]
    except FileNotFoundError:
        raise VaekitError(f"table {path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VaekitError(f"{path} is not a readable UTF-8 CSV file ({exc}): save it as CSV text") from None
    if not rows:
        raise VaekitError(f"table {path} is empty: it needs rows of numbers")
    first = rows[0][1]
    has_header = any(_parse_number(cell) is None for cell in first)
    columns = tuple(c.strip() for c in first) if has_header else default_columns(len(first))
    body = rows[1:] if has_header else rows
    width = len(columns)
    for number, row in body:
        if len(row) != width:
            raise VaekitError(f"{path}: line {number} has {len(row)} fields where the header has {width}: fix that row")
    if len(body) < MIN_ROWS:
        raise VaekitError(f"{path} has {len(body)} row(s) of data: need at least {MIN_ROWS} (train, validation, test)")
    labels = class_names = None
    feature_index = list(range(width))
    if label_column is not None:
        if label_column not in columns:
            raise VaekitError(f"{path} has no column {label_column!r} for --label-column: it has {list(columns)}")
        at = columns.index(label_column)
        feature_index.remove(at)
        labels, class_names = _label_codes([row[at].strip() for _, row in body], label_column, str(path))
    features = np.empty((len(body), len(feature_index)), dtype=np.float32)
    for r, (number, row) in enumerate(body):
        for c, at in enumerate(feature_index):
            value = _parse_number(row[at])
            if value is None:
                what = "is empty" if not row[at].strip() else f"holds {row[at].strip()!r}, not a number"
                raise VaekitError(
                    f"{path}: line {number}, column {columns[at]!r} {what}: every feature must be a number "
                    "(name a label column with --label-column)"
                )
            features[r, c] = value
    table = Table(features, tuple(columns[i] for i in feature_index), labels, class_names)
    check_table(table, str(path), lines=[number for number, _ in body])
    return table


def check_table(table: Table, source: str, lines: list[int] | None = None) -> None:
    """Refuse what no model can learn from: NaN or infinite cells, constant columns, too few rows.
    `lines` maps row index -> the file's line number for messages."""
    features = table.features
    if features.ndim != 2 or features.shape[1] == 0:
        raise VaekitError(f"{source} has shape {features.shape}: a table is (rows, features) with at least one feature")
    if len(features) < MIN_ROWS:
        raise VaekitError(f"{source} has {len(features)} row(s): need at least {MIN_ROWS} (train, validation, test)")
    bad = ~np.isfinite(features)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        where = f"line {lines[row]}" if lines is not None else f"row {row}"
        raise VaekitError(
            f"{source}: {where}, column {table.columns[col]!r} is {features[row, col]}: "
            "fill or drop missing values first"
        )
    spread = features.max(axis=0) - features.min(axis=0)
    constant = np.flatnonzero(spread == 0)
    if constant.size:
        col = int(constant[0])
        raise VaekitError(
            f"{source}: column {table.columns[col]!r} is {features[0, col]:g} in every row: a constant carries no "
            "information, drop the column"
        )


def table_from_array(array: np.ndarray, source: str, columns: tuple[str, ...] | None = None) -> Table:
    """A 2-D numeric array (N, D) -> Table (float32)."""
    if array.ndim != 2:
        raise VaekitError(f"{source} has shape {array.shape}: vectors are (N, D)")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise VaekitError(f"{source} has dtype {array.dtype}: vectors must be numbers")
    if columns is None:
        columns = default_columns(array.shape[1])
    if len(columns) != array.shape[1]:
        raise VaekitError(f"{source}: {len(columns)} column names for {array.shape[1]} features")
    table = Table(np.asarray(array, dtype=np.float32), tuple(str(c) for c in columns))
    check_table(table, source)
    return table


@dataclass(frozen=True)
class Scaling:
    """Per-feature standardisation x -> (x - mean) / std, fitted on the training split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def identity(count: int) -> Scaling:
        return Scaling((0.0,) * count, (1.0,) * count)


def fit_scaling(train_items: np.ndarray, columns: tuple[str, ...]) -> Scaling:
    """Mean and standard deviation of each feature over the training split, (N, 1, 1, D) -> D each."""
    features = train_items.reshape(len(train_items), -1).astype(np.float64)
    mean, std = features.mean(axis=0), features.std(axis=0)
    flat = std <= RELATIVE_SPREAD_FLOOR * np.maximum(1.0, np.abs(mean))
    if flat.any():
        col = int(np.flatnonzero(flat)[0])
        raise VaekitError(
            f"column {columns[col]!r} is (almost) constant over the training split ({mean[col]:g}): it carries no "
            "information, drop the column"
        )
    return Scaling(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def check_binary(train_items: np.ndarray, columns: tuple[str, ...]) -> None:
    """A Bernoulli likelihood on a table needs every cell to be 0 or 1."""
    features = train_items.reshape(len(train_items), -1)
    off = ~np.isin(features, (0.0, 1.0))
    if off.any():
        row, col = (int(i) for i in np.argwhere(off)[0])
        raise VaekitError(
            f"column {columns[col]!r} holds {features[row, col]:g}: a Bernoulli likelihood needs 0/1 columns; "
            "use --likelihood gaussian --gaussian-variance pixel (the `table` preset)"
        )


def log_scale_jacobian(scaling: Scaling) -> float:
    """sum_d log std_d: what a density of the standardised features gains in nats when it is made
    a density in the user's units (-log p(x) = -log p(x_std) + sum log std)."""
    return float(sum(math.log(s) for s in scaling.std))


def with_table_scaling(config: RunConfig, train_items: np.ndarray, columns: tuple[str, ...]) -> RunConfig:
    """Check that the model suits a table and store the training split's standardisation in the
    config (identity for 0/1 features under a Bernoulli). A config that has one keeps it (resume)."""
    model = config.model
    if model.architecture in ("conv", "resnet") or model.pixel_context_layers > 0:
        raise VaekitError(
            f"a table's rows are vectors, not images: --architecture {model.architecture} and --pixel-context-layers "
            "need images; use --architecture mlp (the `table` preset) or your own network"
        )
    likelihood = config.likelihood.spec
    if "table_rows" not in likelihood.offers:
        takes = " or ".join(providers("likelihood", "table_rows"))
        raise VaekitError(
            f"--likelihood {likelihood.name} models pixels; a table takes --likelihood {takes} (the `table` preset: "
            "a Gaussian with a learned variance per feature)"
        )
    if config.data.is_table:  # fitted already (a resumed run)
        return config
    if "binary_values" in likelihood.offers:  # 0/1 columns, kept as they are
        check_binary(train_items, columns)
        scaling = Scaling.identity(len(columns))
    else:
        scaling = fit_scaling(train_items, columns)
    data = dataclasses.replace(
        config.data, feature_mean=scaling.mean, feature_std=scaling.std, feature_names=tuple(columns)
    )
    return dataclasses.replace(config, data=data)


def write_rows(path: str | Path, rows: np.ndarray, columns: tuple[str, ...]) -> None:
    """Rows (N, D) as CSV under a header of column names, or as .npy by the suffix; atomically."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(rows))
        write_bytes(path, buffer.getvalue())
        return
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows([f"{value:.7g}" for value in row] for row in np.asarray(rows))
    write_text(path, text.getvalue())
