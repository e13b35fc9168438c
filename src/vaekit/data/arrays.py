"""The user's own images stored as a NumPy array file (.npy or .npz)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vaekit.data.splits import ImageSet
from vaekit.errors import VaekitError

IMAGE_KEYS = ("x", "images", "x_train", "data", "arr_0")
LABEL_KEYS = ("y", "labels", "y_train", "targets")


def to_uint8_images(array: np.ndarray, source: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if array.ndim == 3:
        array = array[..., None]  # (N, H, W) -> (N, H, W, 1)
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or min(array.shape) == 0:
        raise VaekitError(
            f"{source} has shape {array.shape}: expected (N, H, W) or (N, H, W, C) with C = 1 or 3 and N >= 1"
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


def load_array_file(path: str | Path) -> ImageSet:
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
            return ImageSet(to_uint8_images(loaded, str(path)))
        with loaded:
            image_key = _pick(loaded, IMAGE_KEYS) or (loaded.files[0] if len(loaded.files) == 1 else None)
            if image_key is None:
                raise VaekitError(
                    f"{path} holds arrays {loaded.files}: name the images one of {', '.join(IMAGE_KEYS[:3])}"
                )
            images = to_uint8_images(loaded[image_key], f"{path}[{image_key}]")
            label_key = _pick(loaded, LABEL_KEYS)
            labels = None
            if label_key is not None:
                labels = np.asarray(loaded[label_key])
                if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
                    raise VaekitError(
                        f"{path}[{label_key}] should be {len(images)} integer labels, "
                        f"found {labels.dtype} {labels.shape}"
                    )
                labels = labels.astype(np.int64)
            return ImageSet(images, labels)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise VaekitError(f"{path} is damaged ({exc}): re-save it with numpy.savez") from None
