"""A table run's rows: synthetic rows drawn from the model (on conditions, by rejection) and the
empty cells of a table filled in (MIWAE's imputation, Mattei & Frellsen 2019).

Imputation. The encoder sees an empty cell as 0 and q(z|x_obs) proposes K codes z_k; each is
weighed by w_k ∝ p(x_obs|z_k) p(z_k) / q(z_k|x_obs), the importance weights of the IWAE bound on
the observed part. A number's single imputation is the weighted mean sum_k w_k E[x_mis|z_k], a
category's the value with the largest weighted probability sum_k w_k p(x_mis = c|z_k) (the
conditional mean and mode under the model, estimated by self-normalised importance sampling);
each of M multiple imputations draws one z_k by its weight and then x_mis ~ p(x_mis|z_k)
(sampling importance resampling). Observed cells are never changed.

Shapes: B rows, W encoded width (rows (B, 1, 1, W) in the model's scale), K codes per row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaekit.atomic import write_bytes, write_text
from vaekit.data.columns import TableSchema, boolean_text
from vaekit.data.tables import table_from_frame
from vaekit.data.transforms import to_model_input, to_user_units
from vaekit.errors import VaekitError

if TYPE_CHECKING:
    from vaekit.loading import TrainedRun

IMPUTE_BATCH = 256  # rows per pass: K decodings of each
SAMPLE_BATCH = 10_000  # rows drawn per pass when sampling
MAX_DRAWS_PER_ROW = 1_000  # rejection sampling gives up after this many draws per row asked for


@dataclass(frozen=True)
class Condition:
    """`column=value`: rows whose `column` holds `value` (a category, a boolean or an integer)."""

    column: str
    value: Any

    def holds(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(columns[self.column] == self.value)


def parse_conditions(entries: Sequence[str], schema: TableSchema) -> list[Condition]:
    """`--where column=value` entries, checked against the run's columns and their values."""
    conditions = []
    for entry in entries:
        column, sep, text = entry.partition("=")
        column, text = column.strip(), text.strip()
        if not sep or not column:
            raise VaekitError(f'--where {entry!r} is not column=value: e.g. --where "cut=Ideal"')
        kind = schema.kinds[schema.index(column)]
        categories = schema.categories[schema.index(column)]
        if kind == "boolean":
            value: Any = boolean_text(text)
            if value not in ("true", "false"):
                raise VaekitError(f"--where {entry!r}: column {column!r} is boolean: give true or false")
            value = value == "true"
        elif kind == "categorical":
            if text not in categories:
                shown = ", ".join(categories[:10]) + (", ..." if len(categories) > 10 else "")
                raise VaekitError(f"--where {entry!r}: column {column!r} has no value {text!r}; its values: {shown}")
            value = text
        elif kind == "integer":
            try:
                value = int(text)
            except ValueError:
                raise VaekitError(f"--where {entry!r}: column {column!r} holds whole numbers: give one") from None
        else:
            raise VaekitError(
                f"--where {entry!r}: column {column!r} holds real numbers, which a draw never equals exactly: "
                "condition on a category, boolean or integer column"
            )
        conditions.append(Condition(column, value))
    return conditions


@torch.no_grad()
def sample_rows(
    run: TrainedRun, n: int, seed: int = 0, draw: bool = False, where: Sequence[Condition] = ()
) -> tuple[dict[str, np.ndarray], float]:
    """n rows from the model, each column in its own type, and the share of draws accepted: with
    `where`, rows are drawn until n meet every condition (rejection sampling)."""
    model, schema = run.model, run.schema
    generator = torch.Generator(model.device).manual_seed(seed)
    kept: list[dict[str, np.ndarray]] = []
    found = tried = 0
    while found < n:
        if tried >= MAX_DRAWS_PER_ROW * n:
            shown = " and ".join(f"{c.column}={c.value}" for c in where)
            raise VaekitError(
                f"--where {shown}: {found} of {tried:,} draws met the conditions ({found / tried:.3%}), fewer than the "
                f"{n} asked for: ask for fewer rows, or train a conditional model (--conditional --label-column)"
            )
        size = SAMPLE_BATCH if where else min(SAMPLE_BATCH, n - found)
        drawn = schema.decode(run.to_rows(model.sample(size, generator, draw=draw)))
        keep = np.ones(size, dtype=bool)
        for condition in where:
            keep &= condition.holds(drawn)
        kept.append({name: values[keep] for name, values in drawn.items()})
        found, tried = found + int(keep.sum()), tried + size
    columns = {name: np.concatenate([part[name] for part in kept])[:n] for name in schema.names}
    return columns, found / tried


def write_table(path: str | Path, columns: dict[str, np.ndarray], schema: TableSchema) -> None:
    """Rows as CSV under their column names (numbers to 7 significant digits), or as .npy of
    floats for a table of numbers alone; atomically."""
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not schema.all_numeric:
            raise VaekitError(f"{path}: .npy holds numbers, and this table has categories: write a .csv")
        buffer = io.BytesIO()
        np.save(buffer, np.stack([columns[name].astype(np.float32) for name in schema.names], axis=1))
        write_bytes(path, buffer.getvalue())
        return
    write_text(path, pd.DataFrame(columns).to_csv(index=False, float_format="%.7g"))


def _encoded(run: TrainedRun, frame: Any, source: str) -> np.ndarray:
    """A DataFrame -> the run's encoded rows in the user's units (N, W), NaN where empty."""
    data = run.config.data
    table = table_from_frame(frame, source, data.label_column, run.schema)
    return table.features


@torch.no_grad()
def _fill_batch(run: TrainedRun, x: torch.Tensor, k: int, draws: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Model-scale rows with empty cells (B, 1, 1, W) -> 1 (the conditional mean and mode) or
    `draws` (resampled) filled copies, each (B, 1, 1, W), observed cells unchanged."""
    model = run.model
    posterior = model.encode(x)
    terms = model.terms(x, posterior, k, generator)
    weights = torch.softmax(terms.log_w, dim=0)  # (K, B): self-normalised importance weights
    decoded = model.decode(terms.z.flatten(0, 1))  # (K * B, 1, 1, W)
    empty = torch.isnan(x)
    if draws == 0:
        means = model.likelihood.mean(decoded).view(k, len(x), -1)  # numbers' means, categories' probabilities
        # a category's filled block holds its weighted probabilities: decoding takes their largest
        expected = (weights[..., None] * means).sum(0).view_as(x)  # (B, 1, 1, W)
        return [torch.where(empty, expected, x)]
    filled = []
    for _ in range(draws):
        chosen = torch.multinomial(weights.T, 1, generator=generator)[:, 0]  # (B,) one code per row
        picked = decoded.view(k, len(x), *decoded.shape[1:])[chosen, torch.arange(len(x))]
        filled.append(torch.where(empty, model.likelihood.sample(picked, generator), x))
    return filled


def impute_frame(run: TrainedRun, frame: Any, draws: int = 0, k: int = 100, seed: int = 0) -> list[Any]:
    """A DataFrame's empty cells filled by the run's model: one frame (draws 0: the conditional
    mean of numbers, mode of categories) or `draws` frames (multiple imputations). Observed cells
    and columns the model does not know of (the label column) are returned as they are."""
    if k < 1 or draws < 0:
        raise VaekitError(f"--k {k} must be at least 1 and --draws {draws} 0 or more")
    encoded = _encoded(run, frame, "the table to impute")
    generator = torch.Generator(run.model.device).manual_seed(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(max(draws, 1))]
    for start in range(0, len(encoded), IMPUTE_BATCH):
        rows = torch.from_numpy(encoded[start : start + IMPUTE_BATCH]).to(run.model.device)
        x = to_model_input(rows[:, None, None, :], run.config.data)
        complete = not torch.isnan(x).any()
        filled = [x] * max(draws, 1) if complete else _fill_batch(run, x, k, draws, generator)
        for part, values in zip(parts, filled, strict=True):
            part.append(to_user_units(values, run.config.data).flatten(1).cpu().numpy())
    return [_merged(frame, run.schema, run.schema.decode(np.concatenate(part))) for part in parts]


def _merged(frame: Any, schema: TableSchema, filled: dict[str, np.ndarray]) -> Any:
    """`frame` with each empty cell of the model's columns taken from `filled`, each column then
    in its kind's type (integers whole, booleans true/false)."""
    out = frame.copy()
    for name, kind in zip(schema.names, schema.kinds, strict=True):
        empty = out[name].isna().to_numpy()
        if not empty.any():
            continue
        column = out[name].astype(object)
        column[empty] = filled[name][empty]
        if kind == "integer":
            column = column.astype(np.float64).round().astype(np.int64)
        elif kind == "numeric":
            column = column.astype(np.float64)
        elif kind == "boolean":
            column = column.map(
                lambda cell: cell if isinstance(cell, (bool, np.bool_)) else boolean_text(cell) == "true"
            )
        out[name] = column
    return out


def empty_cells(frame: Any, schema: TableSchema) -> int:
    """How many cells of the model's columns are empty."""
    return int(sum(frame[name].isna().sum() for name in schema.names if name in frame.columns))
