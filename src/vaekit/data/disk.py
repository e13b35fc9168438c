"""Image sets larger than memory: uint8 images in one raw file on disk, read batch by batch.

A converted set is a folder holding `images.u8` (N images of shape (C, H, W), uint8, row after
row) and `vaekit-images.json` (count, shape, class names) with `labels.npy` when there are labels.
Batches are read with os.pread rather than through a memory map: the pages go through the
kernel's page cache, which the kernel can drop at will, and never count towards the process's
resident memory, so training memory stays flat whatever the size of the set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vaekit.atomic import write_json
from vaekit.errors import VaekitError

HEADER = "vaekit-images.json"
DATA = "images.u8"
FORMAT = "vaekit-images-1"


class DiskImages:
    """A read-only view of some rows of an on-disk uint8 image file, shape (N, C, H, W)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: Path, total: int, image_shape: tuple[int, int, int], rows: np.ndarray | None = None):
        self.path = path
        self.total = total
        self.image_shape = image_shape
        self.row_bytes = int(np.prod(image_shape))
        self.rows = np.arange(total, dtype=np.int64) if rows is None else rows

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), *self.image_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: np.ndarray | slice) -> DiskImages:
        return DiskImages(self.path, self.total, self.image_shape, self.rows[indices])

    def read(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """The images at positions `indices` of this view, in that order: uint8 (B, C, H, W)."""
        physical = self.rows[np.asarray(indices, dtype=np.int64)]
        out = np.empty((len(physical), self.row_bytes), dtype=np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, row in enumerate(physical):
                chunk = os.pread(fd, self.row_bytes, int(row) * self.row_bytes)
                if len(chunk) != self.row_bytes:
                    raise VaekitError(f"{self.path} is shorter than its header says: convert the images again")
                out[i] = np.frombuffer(chunk, dtype=np.uint8)
        finally:
            os.close(fd)
        return out.reshape(len(physical), *self.image_shape)

    def __getitem__(self, key: slice) -> np.ndarray:
        """Slices only (what evaluation and pictures use): read into memory."""
        return self.read(np.arange(len(self.rows))[key])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self.read(np.arange(len(self.rows)))
        return data if dtype is None else data.astype(dtype)


def is_converted(folder: Path) -> bool:
    return (folder / HEADER).is_file() and (folder / DATA).is_file()


def open_converted(folder: Path) -> tuple[DiskImages, np.ndarray | None, tuple[str, ...] | None]:
    try:
        header = json.loads((folder / HEADER).read_text())
        count, shape = int(header["count"]), tuple(int(v) for v in header["shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VaekitError(f"{folder / HEADER} is damaged ({exc}): convert the images again") from None
    if header.get("format") != FORMAT or len(shape) != 3:
        raise VaekitError(f"{folder / HEADER} is not a vaekit image set header")
    expected = count * int(np.prod(shape))
    if (folder / DATA).stat().st_size != expected:
        raise VaekitError(
            f"{folder / DATA} holds {(folder / DATA).stat().st_size} bytes, its header says {expected}: "
            "the conversion was interrupted; convert the images again"
        )
    labels = np.load(folder / "labels.npy", allow_pickle=False) if (folder / "labels.npy").is_file() else None
    names = tuple(header["class_names"]) if header.get("class_names") else None
    return DiskImages(folder / DATA, count, (shape[0], shape[1], shape[2])), labels, names


def write_converted(
    folder: Path,
    batches: Iterable[np.ndarray],
    image_shape: tuple[int, int, int],
    labels: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Path:
    """Stream uint8 batches (B, C, H, W) into a converted set; the header is written last, so a
    set whose conversion was interrupted is never taken for a complete one."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(folder / DATA, "wb") as out:
        for batch in batches:
            if batch.dtype != np.uint8 or batch.shape[1:] != image_shape:
                raise VaekitError(f"batch {batch.dtype} {batch.shape} does not match uint8 (B, *{image_shape})")
            out.write(np.ascontiguousarray(batch).tobytes())
            count += len(batch)
        out.flush()
        os.fsync(out.fileno())
    if labels is not None:
        np.save(folder / "labels.npy", labels.astype(np.int64))
    write_json(
        folder / HEADER,
        {"format": FORMAT, "count": count, "shape": list(image_shape), "class_names": list(class_names or [])},
    )
    return folder
