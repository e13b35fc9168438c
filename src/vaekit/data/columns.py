"""A table's columns by type, and their encoding into the numbers a model sees.

A column is numeric (any real number), integer (a number written back rounded), boolean or
categorical (text, or a pandas category). Each is encoded into the stored row (N, 1, 1, W):
a number as itself (in the user's units; data/tables.py standardises it), a category or boolean as
the one-hot of its value among the categories seen. An empty cell is NaN in every position of its
column: never filled, the likelihood leaves it out (likelihoods/mixed.py) and the encoder sees 0.

The schema (names, kinds, categories) is fitted once, when a run starts, stored in its config, and
every later command encodes and decodes with it: a category that training never saw is refused,
naming the column and the value.

Shapes: N rows, C columns, W encoded width (one per number, one per category).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from vaekit.errors import VaekitError

ColumnKind = Literal["numeric", "integer", "boolean", "categorical"]
COLUMN_KINDS: tuple[ColumnKind, ...] = ("numeric", "integer", "boolean", "categorical")
DISCRETE: tuple[ColumnKind, ...] = ("boolean", "categorical")
# More categories than this in one column is an identifier, not a category: its one-hot would be
# wider than any table's rows can teach.
MAX_CATEGORIES = 50_000
# How booleans may be written (case aside); stored as the categories "false", "true".
BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class TableSchema:
    """Each column's name, kind and (for booleans and categories) its values, in the order of
    their one-hot positions."""

    names: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]
    categories: tuple[tuple[str, ...], ...]  # () for a number
    # a number column's (least, greatest) value in training, which decoded values are kept within
    # (a model's draw past them is a value the data never had: a year 2010 in a 2007-2009 table);
    # () for a category, and for every column of a schema not fitted yet
    bounds: tuple[tuple[float, ...], ...] = ()

    @staticmethod
    def numeric(names: Sequence[str]) -> TableSchema:
        """Every column a number: the table vaekit read before it knew other kinds."""
        kinds = cast(tuple[ColumnKind, ...], ("numeric",) * len(names))
        return TableSchema(tuple(names), kinds, ((),) * len(names))

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(len(c) if kind in DISCRETE else 1 for kind, c in zip(self.kinds, self.categories, strict=True))

    @property
    def width(self) -> int:
        return sum(self.widths)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Each column's positions in the encoded row."""
        ends = np.cumsum(self.widths).tolist()
        return tuple(slice(end - width, end) for end, width in zip(ends, self.widths, strict=True))

    @property
    def all_numeric(self) -> bool:
        return not any(kind in DISCRETE for kind in self.kinds)

    @property
    def all_categories(self) -> bool:
        return all(kind in DISCRETE for kind in self.kinds)

    @property
    def number_positions(self) -> np.ndarray:
        """The encoded positions that hold numbers (numeric and integer columns), int64 (n,)."""
        spans = [s.start for s, kind in zip(self.slices, self.kinds, strict=True) if kind not in DISCRETE]
        return np.asarray(spans, dtype=np.int64)

    def index(self, column: str) -> int:
        if column not in self.names:
            raise VaekitError(f"the table has no column {column!r}: its columns are {list(self.names)}")
        return self.names.index(column)

    def encode(self, columns: Mapping[str, Sequence[Any] | np.ndarray], source: str) -> np.ndarray:
        """Each column's cells (numbers, text, booleans; None or NaN when empty) -> float32 (N, W),
        NaN across an empty cell's positions. A category not among the schema's is refused."""
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise VaekitError(f"{source} has no column {missing[0]!r}, which the run was trained with: add it")
        out: np.ndarray | None = None
        for name, kind, categories, where in zip(self.names, self.kinds, self.categories, self.slices, strict=True):
            cells = columns[name]  # one column at a time: a lazy mapping converts each as it is asked for
            if out is None:
                out = np.full((len(cells), self.width), np.nan, dtype=np.float32)
            if kind in DISCRETE:
                codes = category_codes(cells, categories, name, source, boolean=kind == "boolean")
                seen = np.flatnonzero(codes >= 0)
                out[seen, where] = 0.0
                out[seen, where.start + codes[seen]] = 1.0
            else:
                out[:, where.start] = numbers_of(cells, name, source)
        return out if out is not None else np.zeros((0, self.width), dtype=np.float32)

    def decode(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Encoded rows in the user's units (N, W) -> each column's values: floats, rounded
        integers, booleans, or category text (a category block's largest entry)."""
        out: dict[str, np.ndarray] = {}
        for name, kind, categories, where in zip(self.names, self.kinds, self.categories, self.slices, strict=True):
            block = rows[:, where]
            if kind in DISCRETE:
                chosen = np.asarray(categories, dtype=object)[block.argmax(axis=1)]
                out[name] = (chosen == "true") if kind == "boolean" else chosen
            else:
                values = block[:, 0].astype(np.float64)
                limits = self.bounds[self.names.index(name)] if self.bounds else ()
                if limits:
                    values = np.clip(values, limits[0], limits[1])
                out[name] = np.rint(values).astype(np.int64) if kind == "integer" else values
        return out

    def with_bounds(self, encoded: np.ndarray) -> TableSchema:
        """This schema with each number column's observed range in `encoded` rows (N, W)."""
        bounds: list[tuple[float, ...]] = []
        for kind, span in zip(self.kinds, self.slices, strict=True):
            cells = encoded[:, span.start]
            seen = cells[~np.isnan(cells)]
            bounds.append(() if kind in DISCRETE or not len(seen) else (float(seen.min()), float(seen.max())))
        return dataclasses.replace(self, bounds=tuple(bounds))

    def encoded_names(self) -> tuple[str, ...]:
        """A name per encoded position: the column's, or column=category."""
        names: list[str] = []
        for name, kind, categories in zip(self.names, self.kinds, self.categories, strict=True):
            names += [f"{name}={c}" for c in categories] if kind in DISCRETE else [name]
        return tuple(names)


def is_empty(cell: Any) -> bool:
    """A cell with no value: None, NaN, pandas' NA, or blank text."""
    if cell is None:
        return True
    if isinstance(cell, str):
        return not cell.strip()
    try:
        return bool(cell != cell)  # NaN and pandas.NA are unequal to themselves
    except (TypeError, ValueError):
        return False


def category_text(cell: Any) -> str:
    """A category's value as stored: booleans as true/false, whole floats without their .0."""
    if isinstance(cell, (bool, np.bool_)):
        return "true" if cell else "false"
    if isinstance(cell, (float, np.floating)) and float(cell).is_integer():
        return str(int(cell))
    return str(cell).strip()


def boolean_text(cell: Any) -> str:
    """A boolean cell as its category, "true" or "false" (any other text is returned as it is)."""
    text = category_text(cell).lower()
    return ("true" if BOOLEAN_WORDS[text] else "false") if text in BOOLEAN_WORDS else text


def _distinct(cells: Sequence[Any] | np.ndarray, boolean: bool) -> tuple[np.ndarray, list[str]]:
    """Each cell's index among the column's distinct values (-1 where empty), int64 (N,), and each
    distinct value as a category's text: the per-value work done once per value, not per cell."""
    import pandas as pd

    factor, distinct = pd.factorize(pd.Series(np.asarray(cells, dtype=object)), use_na_sentinel=True)
    as_text = boolean_text if boolean else category_text
    texts = [as_text(value) if not is_empty(value) else "" for value in distinct]
    blank = np.array([not text for text in texts] + [True], dtype=bool)  # the last stands for -1: empty
    factor = np.where(blank[factor], -1, factor)
    return factor.astype(np.int64), texts


def category_codes(
    cells: Sequence[Any] | np.ndarray, categories: tuple[str, ...], column: str, source: str, boolean: bool = False
) -> np.ndarray:
    """Each cell's position among `categories`, int64 (N,), -1 where empty; a value training never
    saw is refused (a new category has no one-hot position to put it in)."""
    position = {category: i for i, category in enumerate(categories)}
    factor, texts = _distinct(cells, boolean)
    unknown = [text for text in texts if text and text not in position]
    if unknown:
        shown = ", ".join(categories[:10]) + (", ..." if len(categories) > 10 else "")
        raise VaekitError(
            f"{source}: column {column!r} holds {unknown[0]!r}, a category the run never saw in training ({shown}): "
            "map it to one of those or leave the cell empty"
        )
    lookup = np.array([position.get(text, -1) for text in texts] + [-1], dtype=np.int64)
    return lookup[factor]


def numbers_of(cells: Sequence[Any] | np.ndarray, column: str, source: str) -> np.ndarray:
    """A number column's cells -> float64 (N,), NaN where empty; text that is not a number is refused."""
    array = np.asarray(cells)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64)
    out = np.empty(len(array), dtype=np.float64)
    for row, cell in enumerate(array):
        if is_empty(cell):
            out[row] = math.nan
            continue
        try:
            out[row] = float(cell)
        except (TypeError, ValueError):
            raise VaekitError(
                f"{source}: column {column!r} is numeric in this run, but row {row} holds {cell!r}: give a number "
                "or leave the cell empty"
            ) from None
    return out


def parse_column_types(entries: Sequence[str]) -> dict[str, ColumnKind]:
    """`--column-types name=kind,...` -> {name: kind}."""
    chosen: dict[str, ColumnKind] = {}
    for entry in entries:
        name, sep, kind = entry.partition("=")
        if not sep or not name.strip() or kind.strip() not in COLUMN_KINDS:
            raise VaekitError(
                f"--column-types entry {entry!r} is not name=kind: kind is one of {', '.join(COLUMN_KINDS)}, "
                "e.g. --column-types zip=categorical,age=integer"
            )
        chosen[name.strip()] = kind.strip()  # type: ignore[assignment]  # checked against COLUMN_KINDS
    return chosen


def infer_kind(cells: np.ndarray, dtype_kind: str, is_category: bool) -> ColumnKind:
    """A column's kind from its values: a pandas category or text is categorical, true/false
    booleans, numbers that are all whole integers, other numbers numeric."""
    if is_category:
        return "categorical"
    if dtype_kind == "b":
        return "boolean"
    if dtype_kind in "iu":
        return "integer"
    if dtype_kind == "f":
        present = cells[~np.isnan(cells)]
        return "integer" if len(present) and np.all(present == np.round(present)) else "numeric"
    present_text = {text.lower() for text in _distinct(cells, boolean=False)[1] if text}
    if present_text and present_text <= {"true", "false"}:
        return "boolean"
    return "categorical"


def categories_of(cells: Sequence[Any] | np.ndarray, kind: ColumnKind, column: str, source: str) -> tuple[str, ...]:
    """The values a boolean or categorical column takes, sorted (booleans: false, true)."""
    if kind == "boolean":
        unknown = {text for text in _distinct(cells, boolean=True)[1] if text} - {"true", "false"}
        if unknown:
            raise VaekitError(
                f"{source}: column {column!r} is boolean but holds {sorted(unknown)[0]!r}: booleans are true or false "
                "(or 1 or 0)"
            )
        return ("false", "true")
    values = sorted({text for text in _distinct(cells, boolean=False)[1] if text})
    if len(values) > MAX_CATEGORIES:
        raise VaekitError(
            f"{source}: column {column!r} has {len(values):,} categories, more than {MAX_CATEGORIES:,}: it names rows "
            "rather than kinds of them; drop it, or give it as a number with --column-types"
        )
    return tuple(values)
