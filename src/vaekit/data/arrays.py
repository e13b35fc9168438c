"""The user's own data stored as a NumPy array file (.npy or .npz): images (N, H, W[, C]), or
vectors (N, D), a table without column names (see tables.py)."""

from __future__ import annotations

import typing
import zipfile
from pathlib import Path

import numpy as np

from vaekit.data.splits import ImageSet
from vaekit.data.tables import Table, table_from_array
from vaekit.errors import VaekitError

IMAGE_KEYS = ("x", "images", "x_train", "data", "arr_0")
LABEL_KEYS = ("y", "labels", "y_train", "targets")
COLUMNS_KEY = "columns"  # a table's feature names, as a 1-D array of strings
CLASS_NAMES_KEY = "class_names"  # label k's name at position k, as a 1-D array of strings
NAME_KEYS = (COLUMNS_KEY, CLASS_NAMES_KEY)  # arrays of names, never the data


def to_uint8_images(array: np.ndarray, source: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if array.ndim == 3:
        array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or min(array.shape) == 0:
        raise VaekitError(
            f"{source} has shape {array.shape}: expected images (N, H, W) or (N, H, W, C) with C = 1 or 3 and "
            "N >= 1, or vectors (N, D)"
        )
    if array.dtype == np.uint8:
        out = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise VaekitError(f"{source} contains NaN or infinite values: clean the array first")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise VaekitError(
                f"{source} has float values in [{low:g}, {high:g}]: floats must lie in [0, 1] "
                "(divide by 255, or save as uint8)"
            )
        out = np.rint(array * 255.0).astype(np.uint8)
    else:
        raise VaekitError(f"{source} has dtype {array.dtype}: save it as uint8 (0..255) or float in [0, 1]")
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)


def _pick(archive: np.lib.npyio.NpzFile, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in archive.files), None)


def _labels(archive: np.lib.npyio.NpzFile, count: int, path: Path) -> np.ndarray | None:
    label_key = _pick(archive, LABEL_KEYS)
    if label_key is None:
        return None
    labels = np.asarray(archive[label_key])
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise VaekitError(f"{path}[{label_key}] should be {count} integer labels, found {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def _from_array(array: np.ndarray, source: str, columns: tuple[str, ...] | None = None) -> ImageSet | Table:
    """A 2-D array is a table of vectors; anything else must be images."""
    if array.ndim == 2:
        return table_from_array(array, source, columns)
    return ImageSet(to_uint8_images(array, source))


def load_array_file(path: str | Path) -> tuple[ImageSet | Table, tuple[str, ...] | None]:
    """An .npy/.npz file -> (images or a table, class names or None)."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VaekitError(f"array file {path} does not exist") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise VaekitError(
            f"{path} is not a readable .npy/.npz file without pickled objects ({exc}): re-save it with numpy.save"
        ) from None
    try:
        if isinstance(loaded, np.ndarray):
            return _from_array(loaded, str(path)), None
        with loaded:
            names = [k for k in loaded.files if k not in NAME_KEYS]
            image_key = _pick(loaded, IMAGE_KEYS) or (names[0] if len(names) == 1 else None)
            if image_key is None:
                raise VaekitError(
                    f"{path} holds arrays {loaded.files}: name the images one of {', '.join(IMAGE_KEYS[:3])}"
                )
            columns = tuple(str(c) for c in loaded[COLUMNS_KEY]) if COLUMNS_KEY in loaded.files else None
            class_names = tuple(str(c) for c in loaded[CLASS_NAMES_KEY]) if CLASS_NAMES_KEY in loaded.files else None
            data = _from_array(loaded[image_key], f"{path}[{image_key}]", columns)
            labels = _labels(loaded, len(data.features) if isinstance(data, Table) else len(data), path)
            if isinstance(data, Table):
                return Table(data.features, data.columns, labels, class_names), class_names
            return ImageSet(data.images, labels), class_names
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise VaekitError(f"{path} is damaged ({exc}): re-save it with numpy.savez") from None


def _npy_ndim(handle: typing.IO[bytes]) -> int:
    """The number of dimensions an .npy stream's header declares, without reading its data."""
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, _ = read_header(handle)
    return len(shape)


def is_table_source(dataset: str) -> bool:
    """Whether `dataset` names a table: a .csv file, or a .npy/.npz whose data array is 2-D (read
    from the array's header, not loaded). Anything unreadable is left to the loader to refuse."""
    path = Path(dataset).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return True
    if suffix not in (".npy", ".npz") or not path.is_file():
        return False
    try:
        if suffix == ".npy":
            with open(path, "rb") as handle:
                return _npy_ndim(handle) == 2
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist() if n.removesuffix(".npy") not in NAME_KEYS]
            key = next((k for k in IMAGE_KEYS if k in names), names[0] if len(names) == 1 else None)
            if key is None:
                return False
            with archive.open(f"{key}.npy") as handle:
                return _npy_ndim(handle) == 2
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError):
        return False
