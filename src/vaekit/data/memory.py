"""Data handed over from Python: numpy arrays, torch tensors, `Dataset`s and `DataLoader`s, of
images (N, C, H, W) or vectors (N, D), with optional labels.

`from_memory` brings any of them to the stored forms (uint8 images, float32 vectors); arrays and
tensors are converted whole, without per-item Python, and a Dataset or DataLoader is read once.
`save_own_data` writes the result into the run folder as an .npz that the file loader reads back
to the same splits, so a run trained from memory resumes, evaluates and serves like any other.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.atomic import write_bytes
from vaekit.data.arrays import CLASS_NAMES_KEY, COLUMNS_KEY, to_uint8_images
from vaekit.data.splits import ImageSet
from vaekit.data.tables import Table, table_from_array, table_from_frame
from vaekit.errors import VaekitError

OWN_DATA_FILE = "data.npz"  # in the run folder


def _as_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if hasattr(value, "to_numpy"):  # a pandas DataFrame or Series, without importing pandas
        return np.asarray(value.to_numpy())
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise VaekitError(f"{what} cannot be read as an array ({exc})") from None


def _split_item(item: Any) -> tuple[Any, Any]:
    """A Dataset item or DataLoader batch: x, or (x, y, ...) as most datasets return."""
    if isinstance(item, (tuple, list)):
        if not item:
            raise VaekitError("the dataset returned an empty item: return x or (x, label)")
        return item[0], item[1] if len(item) > 1 else None
    if isinstance(item, dict):
        return item.get("x", item.get("image")), item.get("y", item.get("label"))
    return item, None


def _collect(source: Iterable[Any], batched: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Dataset (item by item) or a DataLoader (batch by batch) once into arrays."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for item in source:
        x, y = _split_item(item)
        xs.append(_as_numpy(x, "a dataset item"))
        if y is not None:
            ys.append(np.atleast_1d(_as_numpy(y, "a label")))
    if not xs:
        raise VaekitError("the dataset is empty: it yielded no items")
    stack = np.concatenate if batched else np.stack
    try:
        data = stack(xs)
        labels = (np.concatenate(ys) if ys else None) if len(ys) in (0, len(xs)) else None
    except ValueError as exc:
        raise VaekitError(f"the dataset's items differ in shape ({exc}): every item must have the same shape") from None
    if ys and labels is None:
        raise VaekitError("some dataset items have a label and some do not: give every item one, or none")
    return data, labels


def _labels(raw: Any, count: int) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Labels as int64 codes; text labels (or any non-integers) become class names, sorted."""
    if raw is None:
        return None, None
    labels = _as_numpy(raw, "labels").reshape(-1)
    if len(labels) != count:
        raise VaekitError(f"{len(labels)} labels for {count} items: give one label per item")
    if np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool:
        return labels.astype(np.int64), None
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
        return labels.astype(np.int64), None
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes.astype(np.int64), tuple(str(n) for n in names)


def images_from_array(array: np.ndarray, source: str) -> np.ndarray:
    """(N, C, H, W) (PyTorch's order) or (N, H, W), uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if array.ndim == 4 and array.shape[1] not in (1, 3):
        raise VaekitError(
            f"{source} has shape {array.shape}: images from Python are (N, C, H, W) with C = 1 or 3 "
            "(PyTorch's order; permute channels-last arrays first)"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return to_uint8_images(array, source, "nchw" if array.ndim == 4 else "auto")


def from_memory(
    data: Any, labels: Any = None, columns: Sequence[str] | None = None, column_types: Sequence[str] = ()
) -> tuple[ImageSet | Table, tuple[str, ...] | None]:
    """Any supported in-memory data -> (images or a table, class names or None). A DataFrame's
    columns are typed as a CSV file's are (`column_types`: "name=kind" entries overriding)."""
    if hasattr(data, "dtypes") and hasattr(data, "columns") and getattr(data, "ndim", 0) == 2:
        if columns is not None:
            raise VaekitError("a DataFrame names its own columns: leave out columns=")
        table = table_from_frame(data, "the DataFrame", column_types=tuple(column_types))
        codes, class_names = _labels(labels, len(table.features))
        return dataclasses.replace(table, labels=codes, class_names=class_names), class_names
    if isinstance(data, torch.utils.data.DataLoader):
        array, found = _collect(data, batched=True)
    elif isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
        array, found = _collect((data[i] for i in range(len(data))), batched=False)  # type: ignore[arg-type]
    else:
        array, found = _as_numpy(data, "the data"), None
    if labels is not None and found is not None:
        raise VaekitError("the dataset already yields labels: leave out labels=")
    codes, class_names = _labels(labels if labels is not None else found, len(array))
    if array.ndim == 2:
        table = table_from_array(array, "the data", tuple(columns) if columns is not None else None)
        return Table(table.features, table.columns, codes, class_names), class_names
    if columns is not None:
        raise VaekitError("columns= names a table's features, and this data is images")
    if array.ndim not in (3, 4):
        raise VaekitError(f"the data has shape {array.shape}: give images (N, C, H, W) or (N, H, W), or vectors (N, D)")
    return ImageSet(images_from_array(array, "the data"), codes), class_names


def save_own_data(path: str | Path, data: ImageSet | Table, class_names: tuple[str, ...] | None) -> None:
    """Write data as the .npz the file loader reads (images channels-last, as files keep them), atomically."""
    arrays: dict[str, np.ndarray] = {}
    if isinstance(data, Table):
        arrays["x"] = data.features  # encoded (N, W), NaN where empty: the run's schema reads it back
        arrays[COLUMNS_KEY] = np.array(data.table_schema.encoded_names())
        labels = data.labels
    else:
        arrays["x"] = np.asarray(data.images).transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        labels = data.labels
    if labels is not None:
        arrays["y"] = labels
    if class_names is not None:
        arrays[CLASS_NAMES_KEY] = np.array(class_names)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    write_bytes(path, buffer.getvalue())
