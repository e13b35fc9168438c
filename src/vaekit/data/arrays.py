"""The user's own data stored as a NumPy array file (.npy or .npz): images (N, H, W), (N, H, W, C)
or PyTorch's (N, C, H, W), or vectors (N, D), a table without column names (see tables.py).

A 4-D array's layout is read from where its channel axis (C = 1 or 3) can be; a shape that fits
both layouts, such as (N, 3, 8, 3), is refused unless `--array-layout` names one."""

from __future__ import annotations

import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.config import ArrayLayout
from vaekit.data.splits import ImageSet
from vaekit.data.tables import Table, table_from_array
from vaekit.errors import VaekitError

IMAGE_KEYS = ("x", "images", "x_train", "data", "arr_0")
LABEL_KEYS = ("y", "labels", "y_train", "targets")
COLUMNS_KEY = "columns"  # a table's feature names, as a 1-D array of strings
CLASS_NAMES_KEY = "class_names"  # label k's name at position k, as a 1-D array of strings
FACTORS_KEY = "factors"  # ground-truth factors of each item, integers (N, F)
FACTOR_NAMES_KEY = "factor_names"  # their names, a 1-D array of F strings
NAME_KEYS = (COLUMNS_KEY, CLASS_NAMES_KEY, FACTORS_KEY, FACTOR_NAMES_KEY)  # never the data
IMAGE_CHANNELS = (1, 3)
LAYOUT_SHAPES = {"nhw": "(N, H, W)", "nhwc": "(N, H, W, C)", "nchw": "(N, C, H, W)"}


def image_layout(shape: tuple[int, ...], requested: str, source: str) -> str:
    """Which of LAYOUT_SHAPES an image array of `shape` is in: 'nhw', 'nhwc' or 'nchw'.

    `requested` 'auto' decides from the shape and refuses one that fits both 4-D layouts."""
    if len(shape) == 3:
        return "nhw"
    expected = "expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 and N >= 1, or vectors (N, D)"
    if len(shape) != 4 or min(shape) == 0:
        raise VaekitError(f"{source} has shape {shape}: {expected}")
    fits = [layout for layout, axis in (("nhwc", 3), ("nchw", 1)) if shape[axis] in IMAGE_CHANNELS]
    if requested != "auto":
        if requested not in fits:
            raise VaekitError(
                f"{source} has shape {shape}, which is not {LAYOUT_SHAPES[requested]} with C = 1 or 3: "
                f"check --array-layout {requested}"
            )
        return requested
    if not fits:
        raise VaekitError(f"{source} has shape {shape}: {expected}")
    if len(fits) == 2:
        raise VaekitError(
            f"{source} has shape {shape}, which could be (N, H, W, C) or (N, C, H, W): say which with "
            "--array-layout nhwc or --array-layout nchw"
        )
    return fits[0]


def to_uint8_images(array: np.ndarray, source: str, layout: str = "auto") -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    found = image_layout(array.shape, layout, source)
    if found == "nhw":
        array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
    elif found == "nchw":
        array = array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
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


@dataclass(frozen=True)
class ArrayFile:
    """What an .npy/.npz file held: images or a table, its class names, and the layout its images
    were read in ('nhw', 'nhwc' or 'nchw'; None for a table), for the training log."""

    data: ImageSet | Table
    class_names: tuple[str, ...] | None = None
    layout: str | None = None
    factor_names: tuple[str, ...] | None = None


def _factors(archive: np.lib.npyio.NpzFile, count: int, path: Path) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """An archive's ground-truth factors (N, F) as int64, and their names (default factor_0, ...)."""
    if FACTORS_KEY not in archive.files:
        if FACTOR_NAMES_KEY in archive.files:
            raise VaekitError(f"{path} names factors but holds no `factors` array: add it, (N, F) integers")
        return None, None
    factors = np.asarray(archive[FACTORS_KEY])
    if factors.ndim != 2 or len(factors) != count or factors.shape[1] < 1:
        raise VaekitError(f"{path}[factors] has shape {factors.shape}: expected ({count}, F), one row per image")
    if not np.issubdtype(factors.dtype, np.integer):
        raise VaekitError(
            f"{path}[factors] holds {factors.dtype}: factors are integer indices (0, 1, ... per factor): "
            "discretise them first"
        )
    if FACTOR_NAMES_KEY in archive.files:
        names = tuple(str(n) for n in archive[FACTOR_NAMES_KEY])
        if len(names) != factors.shape[1]:
            raise VaekitError(f"{path} names {len(names)} factors for {factors.shape[1]} columns of `factors`")
    else:
        names = tuple(f"factor_{j}" for j in range(factors.shape[1]))
    return factors.astype(np.int64), names


def _from_array(
    array: np.ndarray, source: str, layout: ArrayLayout, columns: tuple[str, ...] | None = None
) -> tuple[ImageSet | Table, str | None]:
    """A 2-D array is a table of vectors; anything else must be images."""
    if array.ndim == 2:
        return table_from_array(array, source, columns), None
    found = image_layout(array.shape, layout, source)
    return ImageSet(to_uint8_images(array, source, found)), found


def load_array_file(path: str | Path, layout: ArrayLayout = "auto") -> ArrayFile:
    """An .npy/.npz file -> its images (in `layout`, or the one its shape shows) or table."""
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
            data, found = _from_array(loaded, str(path), layout)
            return ArrayFile(data, None, found)
        with loaded:
            names = [k for k in loaded.files if k not in NAME_KEYS]
            image_key = _pick(loaded, IMAGE_KEYS) or (names[0] if len(names) == 1 else None)
            if image_key is None:
                raise VaekitError(
                    f"{path} holds arrays {loaded.files}: name the images one of {', '.join(IMAGE_KEYS[:3])}"
                )
            columns = tuple(str(c) for c in loaded[COLUMNS_KEY]) if COLUMNS_KEY in loaded.files else None
            class_names = tuple(str(c) for c in loaded[CLASS_NAMES_KEY]) if CLASS_NAMES_KEY in loaded.files else None
            data, found = _from_array(loaded[image_key], f"{path}[{image_key}]", layout, columns)
            labels = _labels(loaded, len(data.features) if isinstance(data, Table) else len(data), path)
            if isinstance(data, Table):
                return ArrayFile(Table(data.features, data.columns, labels, class_names), class_names)
            factors, factor_names = _factors(loaded, len(data), path)
            return ArrayFile(ImageSet(data.images, labels, factors), class_names, found, factor_names)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise VaekitError(f"{path} is damaged ({exc}): re-save it with numpy.savez") from None


def _npy_ndim(handle: typing.IO[bytes]) -> int:
    """The number of dimensions an .npy stream's header declares, without reading its data."""
    version = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, _ = read_header(handle)
    return len(shape)


def is_table_source(dataset: str) -> bool:
    """Whether `dataset` names a table: a .csv or .parquet file, or a .npy/.npz whose data array is 2-D (read
    from the array's header, not loaded). Anything unreadable is left to the loader to refuse."""
    path = Path(dataset).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
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
