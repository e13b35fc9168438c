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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from vaekit.atomic import write_bytes, write_text
from vaekit.config import DataConfig, RunConfig
from vaekit.data.columns import (
    DISCRETE,
    ColumnKind,
    TableSchema,
    categories_of,
    category_text,
    infer_kind,
    is_empty,
    parse_column_types,
)
from vaekit.errors import VaekitError
from vaekit.methods import providers

MIN_ROWS = 3  # one each for training, validation and test
# A feature whose training-split spread is below this (relative to its size) is constant in effect:
# standardising it would divide by (almost) zero.
RELATIVE_SPREAD_FLOOR = 1e-6


@dataclass(frozen=True)
class Table:
    """Encoded rows float32 (N, W) (NaN across an empty cell's positions) with their columns'
    names, labels int64 (N,) or None, and the schema that encoded them (every column a number
    when none is given)."""

    features: np.ndarray
    columns: tuple[str, ...]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    schema: TableSchema | None = None

    @property
    def table_schema(self) -> TableSchema:
        return self.schema if self.schema is not None else TableSchema.numeric(self.columns)

    def as_items(self) -> np.ndarray:
        """(N, W) -> (N, 1, 1, W), the stored layout."""
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


def _rows_and_header(path: Path) -> tuple[tuple[str, ...] | None, int, list[int]]:
    """A CSV file's header (None when its first row is all numbers), its width and the line
    number of each row of data (as an editor counts them; rows with every cell blank are left
    out). Every row must have the header's number of fields."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            first = next((row for row in reader if any(c.strip() for c in row)), None)
            if first is None:
                raise VaekitError(f"table {path} is empty: it needs rows of numbers")
            width, lines = len(first), []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != width:
                    what = "the header has" if any(_parse_number(c) is None for c in first) else "the first row has"
                    raise VaekitError(
                        f"{path}: line {reader.line_num} has {len(row)} fields where {what} {width}: fix that row"
                    )
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise VaekitError(f"table {path} does not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise VaekitError(f"{path} is not a readable UTF-8 CSV file ({exc}): save it as CSV text") from None
    has_header = any(_parse_number(cell) is None for cell in first)
    if not has_header:  # the first row is data
        lines.insert(0, 1)
    return (tuple(c.strip() for c in first) if has_header else None), width, lines


def read_parquet(path: str | Path) -> Any:
    """A Parquet file as a pandas DataFrame (through pyarrow, an optional dependency)."""
    path = Path(path)
    try:
        import pyarrow
    except ImportError:
        raise VaekitError(
            f"{path} is a Parquet file: reading it needs pyarrow (pip install 'vaekit[parquet]'), or save it as CSV"
        ) from None
    import pandas as pd

    if not path.is_file():
        raise VaekitError(f"table {path} does not exist")
    try:
        return pd.read_parquet(path).dropna(how="all")
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise VaekitError(f"{path} is not a readable Parquet file ({exc}): write it again, or save it as CSV") from None


def read_parquet_table(
    path: str | Path,
    label_column: str | None = None,
    schema: TableSchema | None = None,
    column_types: tuple[str, ...] = (),
) -> Table:
    """A Parquet file -> Table, its columns typed (or encoded by a run's schema) as a CSV file's."""
    return table_from_frame(read_parquet(path), str(path), label_column, schema, column_types)


def read_frame(path: str | Path) -> Any:
    """A CSV file with a header row (or a Parquet file) as a pandas DataFrame, as read_csv_table
    reads it (empty cells missing, rows of empty cells left out)."""
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return read_parquet(path)
    header, _, _ = _rows_and_header(path)
    if header is None:
        raise VaekitError(f"{path} has no header row: a table to impute or compare by column needs its column names")
    return pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True, low_memory=False).dropna(how="all")


def read_csv_table(
    path: str | Path,
    label_column: str | None = None,
    schema: TableSchema | None = None,
    column_types: tuple[str, ...] = (),
) -> Table:
    """A CSV file with a header row (optional when every cell is a number) -> Table: each column
    typed from its values (`column_types`, "name=kind" entries, overriding), or encoded by a run's
    `schema`. Empty cells are missing values. Every problem names its line and column."""
    import pandas as pd

    path = Path(path)
    header, width, lines = _rows_and_header(path)
    columns = header if header is not None else default_columns(width)
    if len(set(columns)) != len(columns):
        twice = next(c for c in columns if columns.count(c) > 1)
        raise VaekitError(f"{path}: the header names column {twice!r} twice: give each column its own name")
    if len(lines) < MIN_ROWS:
        raise VaekitError(f"{path} has {len(lines)} row(s) of data: need at least {MIN_ROWS} (train, validation, test)")
    frame = pd.read_csv(
        path,
        header=0 if header is not None else None,
        names=list(columns),
        encoding="utf-8-sig",
        skipinitialspace=True,
        low_memory=False,
    ).dropna(how="all")
    return table_from_frame(frame, str(path), label_column, schema, column_types, lines)


def table_from_frame(
    frame: Any,
    source: str,
    label_column: str | None = None,
    schema: TableSchema | None = None,
    column_types: tuple[str, ...] = (),
    lines: list[int] | None = None,
) -> Table:
    """A pandas DataFrame -> Table, as read_csv_table types and encodes a file's columns."""
    columns = tuple(str(c) for c in frame.columns)
    labels = class_names = None
    if label_column is not None:
        if label_column not in columns:
            raise VaekitError(f"{source} has no column {label_column!r} for --label-column: it has {list(columns)}")
        cells = frame[label_column]
        texts = ["" if is_empty(v) else category_text(v) for v in cells.tolist()]
        labels, class_names = _label_codes(texts, label_column, source)
        frame = frame.drop(columns=[label_column])
        columns = tuple(c for c in columns if c != label_column)
    fitting = schema is None  # else a run's schema, typed when it started (with its --column-types)
    if schema is None:
        schema = infer_schema(frame, parse_column_types(column_types), source)
    cells = _Cells(frame)
    extra = [c for c in columns if c not in schema.names]
    if extra:
        raise VaekitError(f"{source} has column {extra[0]!r}, which the run was not trained with: drop it")
    table = Table(schema.encode(cells, source), schema.names, labels, class_names, schema)
    check_table(table, source, lines, fitting)
    return table


class _Cells(Mapping[str, np.ndarray]):
    """A DataFrame's columns as `cells_of` gives them, each converted only when asked for (so a
    large table's columns are not all copied at once)."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def __getitem__(self, name: str) -> np.ndarray:
        return cells_of(self.frame[name])

    def __iter__(self) -> Iterator[str]:
        return iter(str(c) for c in self.frame.columns)

    def __len__(self) -> int:
        return len(self.frame.columns)

    def __contains__(self, name: object) -> bool:
        return name in self.frame.columns


def infer_schema(frame: Any, chosen: dict[str, ColumnKind], source: str) -> TableSchema:
    """Each column's kind (from `chosen` where named, else from its values) and categories."""
    import pandas as pd

    unknown = [name for name in chosen if name not in frame.columns]
    if unknown:
        raise VaekitError(
            f"--column-types names {unknown[0]!r}, but {source} has no such column: it has {list(frame.columns)}"
        )
    names, kinds, categories = [], [], []
    for name in frame.columns:
        series = frame[name]
        if series.isna().all():
            raise VaekitError(f"{source}: column {str(name)!r} is empty in every row: drop it")
        if series.dtype == object and not _all_boolean_text(series):  # numbers held as Python objects
            as_numbers = pd.to_numeric(series, errors="coerce")
            if as_numbers.notna().sum() == series.notna().sum():
                series = as_numbers
        numbers = _is_number_column(series)
        values = cells_of(series)
        text = not numbers and not pd.api.types.is_bool_dtype(series.dtype)
        dtype_kind = "c" if text else series.dtype.kind
        kind = chosen.get(str(name)) or infer_kind(values, dtype_kind, text and not _all_boolean_text(series))
        names.append(str(name))
        kinds.append(kind)
        categories.append(categories_of(values, kind, str(name), source) if kind in DISCRETE else ())
    return TableSchema(tuple(names), tuple(kinds), tuple(categories))


def _is_number_column(series: Any) -> bool:
    import pandas as pd

    dtype = series.dtype
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    )


def cells_of(series: Any) -> np.ndarray:
    """A DataFrame column's cells: float64 with NaN where empty for numbers, else objects with None."""
    if _is_number_column(series):
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(series.astype(object).where(series.notna(), None).to_numpy())


def _all_boolean_text(series: Any) -> bool:
    present = {category_text(c).lower() for c in series.dropna().unique().tolist()}
    return bool(present) and present <= {"true", "false"}


def check_table(table: Table, source: str, lines: list[int] | None = None, fitting: bool = True) -> None:
    """Refuse what no model can take: infinite cells; and, for a table a model is to be fitted on,
    constant columns and too few rows. Empty cells (NaN) are missing values, left to the
    likelihood. `lines` maps row index -> the file's line number for messages."""
    features, schema = table.features, table.table_schema
    if features.ndim != 2 or features.shape[1] == 0:
        raise VaekitError(f"{source} has shape {features.shape}: a table is (rows, features) with at least one feature")
    names = schema.encoded_names()
    numbers = schema.number_positions
    bad = np.isinf(features[:, numbers])  # a one-hot position is 0, 1 or NaN by construction
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        col = int(numbers[col])
        where = f"line {lines[row]}" if lines is not None else f"row {row}"
        raise VaekitError(f"{source}: {where}, column {names[col]!r} is {features[row, col]}: give a finite number")
    if not fitting:
        return
    if len(features) < MIN_ROWS:
        raise VaekitError(f"{source} has {len(features)} row(s): need at least {MIN_ROWS} (train, validation, test)")
    for name, kind, categories, span in zip(schema.names, schema.kinds, schema.categories, schema.slices, strict=True):
        if kind in DISCRETE:
            seen = np.flatnonzero((features[:, span] == 1.0).any(axis=0))  # the values the rows hold
            if len(seen) == 0:
                raise VaekitError(f"{source}: column {name!r} is empty in every row: drop it")
            if len(seen) == 1:
                raise VaekitError(
                    f"{source}: column {name!r} is {categories[int(seen[0])]!r} in every row: a constant carries no "
                    "information, drop the column"
                )
            continue
        cells = features[:, span.start]
        if np.isnan(cells).all():
            raise VaekitError(f"{source}: column {name!r} is empty in every row: drop it")
        if np.nanmax(cells) == np.nanmin(cells):
            raise VaekitError(
                f"{source}: column {name!r} is {np.nanmin(cells):g} in every row: a constant carries no information, "
                "drop the column"
            )


def table_from_array(array: np.ndarray, source: str, columns: tuple[str, ...] | None = None) -> Table:
    """A 2-D numeric array (N, D) -> Table (float32), NaN cells missing."""
    if array.ndim != 2:
        raise VaekitError(f"{source} has shape {array.shape}: vectors are (N, D)")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise VaekitError(f"{source} has dtype {array.dtype}: vectors must be numbers (a DataFrame takes other kinds)")
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


def fit_scaling(train_items: np.ndarray, schema: TableSchema) -> Scaling:
    """Mean and standard deviation of each number column over the training split's observed
    cells, (N, 1, 1, W) -> W each; a category's one-hot positions are kept as they are (0, 1)."""
    features = train_items.reshape(len(train_items), -1).astype(np.float64)
    mean, std = np.zeros(schema.width), np.ones(schema.width)
    for name, kind, span in zip(schema.names, schema.kinds, schema.slices, strict=True):
        if kind in DISCRETE:
            continue
        cells = features[:, span.start]
        observed = cells[~np.isnan(cells)]
        if len(observed) == 0:
            raise VaekitError(f"column {name!r} is empty in every row of the training split: drop the column")
        m, sd = observed.mean(), observed.std()
        if sd <= RELATIVE_SPREAD_FLOOR * max(1.0, abs(m)):
            raise VaekitError(
                f"column {name!r} is (almost) constant over the training split ({m:g}): it carries no "
                "information, drop the column"
            )
        mean[span.start], std[span.start] = m, sd
    return Scaling(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def schema_of(data: DataConfig) -> TableSchema | None:
    """The columns a run's table was encoded with; None for images or a table not fitted yet."""
    if data.feature_names is None:
        return None
    if data.column_kinds is None or data.column_categories is None:
        return TableSchema.numeric(data.feature_names)
    kinds = cast(tuple[ColumnKind, ...], data.column_kinds)
    return TableSchema(data.feature_names, kinds, data.column_categories, data.column_bounds or ())


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


def with_table_scaling(config: RunConfig, train_items: np.ndarray, schema: TableSchema) -> RunConfig:
    """Check that the model suits a table and store the table's columns and the training split's
    standardisation in the config (identity for 0/1 features under a Bernoulli). A config that
    has them keeps them (resume)."""
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
            f"--likelihood {likelihood.name} models pixels; a table takes --likelihood {takes} (the `table` preset's "
            "is mixed: one likelihood per column, by its type)"
        )
    if "table_columns" not in likelihood.offers:
        _check_numbers_only(train_items, schema, likelihood.name)
    if config.data.is_table:  # fitted already (a resumed run)
        return config
    if "binary_values" in likelihood.offers:  # 0/1 columns, kept as they are
        check_binary(train_items, schema.names)
        scaling = Scaling.identity(schema.width)
    else:
        scaling = fit_scaling(train_items, schema)
    data = dataclasses.replace(
        config.data,
        feature_mean=scaling.mean,
        feature_std=scaling.std,
        feature_names=schema.names,
        column_kinds=schema.kinds,
        column_categories=schema.categories,
        column_bounds=schema.with_bounds(train_items.reshape(len(train_items), -1)).bounds,
    )
    return dataclasses.replace(config, data=data)


def _check_numbers_only(train_items: np.ndarray, schema: TableSchema, likelihood: str) -> None:
    """A likelihood of numbers alone (a Gaussian, a Bernoulli) takes neither categories nor empty cells."""
    fix = f"--likelihood {' or '.join(providers('likelihood', 'table_columns'))} models each column by its type"
    for name, kind in zip(schema.names, schema.kinds, strict=True):
        if kind in DISCRETE:
            raise VaekitError(f"column {name!r} is {kind}, and --likelihood {likelihood} models numbers: {fix}")
    empty = np.isnan(train_items.reshape(len(train_items), -1)).any(axis=0)
    if empty.any():
        name = schema.encoded_names()[int(np.flatnonzero(empty)[0])]
        raise VaekitError(f"column {name!r} has empty cells, and --likelihood {likelihood} needs every cell: {fix}")


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
