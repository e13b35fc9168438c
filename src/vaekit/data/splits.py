"""In-memory datasets: uint8 images (N, C, H, W), or float32 feature vectors stored as (N, 1, 1, D)
(see tables.py), with optional integer labels, split three ways."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaekit.data.columns import TableSchema
from vaekit.data.disk import DiskImages
from vaekit.errors import VaekitError


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, C, H, W), in memory or on disk, or feature vectors as float32
    (N, 1, 1, D) in memory; labels as int64 (N,) or None; the ground-truth factors of data
    generated from known factors (dSprites) as int64 (N, F) indices, or None."""

    images: np.ndarray | DiskImages
    labels: np.ndarray | None = None
    factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        vectors = self.images.dtype == np.float32 and self.images.ndim == 4 and self.images.shape[1:3] == (1, 1)
        if (self.images.dtype != np.uint8 and not vectors) or self.images.ndim != 4:
            raise VaekitError(
                "ImageSet needs uint8 (N, C, H, W) or float32 (N, 1, 1, D), "
                f"got {self.images.dtype} {self.images.shape}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise VaekitError(
                f"ImageSet has {len(self.labels)} labels for {len(self.images)} images: give one label per image"
            )
        if self.factors is not None and (self.factors.ndim != 2 or len(self.factors) != len(self.images)):
            raise VaekitError(
                f"ImageSet has factors of shape {self.factors.shape} for {len(self.images)} images: give (N, F)"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def is_table(self) -> bool:
        """Feature vectors (float32) rather than images (uint8)."""
        return bool(self.images.dtype == np.float32)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def take(self, indices: np.ndarray | slice) -> ImageSet:
        images = self.images.take(indices) if isinstance(self.images, DiskImages) else self.images[indices]
        labels = None if self.labels is None else self.labels[indices]
        return ImageSet(images, labels, None if self.factors is None else self.factors[indices])

    @property
    def array(self) -> np.ndarray:
        """The images as an in-memory array (validation and test sets always are)."""
        if isinstance(self.images, DiskImages):
            raise VaekitError("this image set is on disk: call in_memory() first")
        return self.images

    def in_memory(self) -> ImageSet:
        """The same set with its images read into memory."""
        if isinstance(self.images, DiskImages):
            return ImageSet(self.images.read(np.arange(len(self.images))), self.labels, self.factors)
        return self


@dataclass(frozen=True)
class DatasetSplits:
    name: str
    source: str  # where the data came from, for messages and the run config
    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None  # a table's feature names; None for images
    layout: str | None = None  # how a .npy/.npz file's images were laid out ('nhw', 'nhwc', 'nchw')
    factor_names: tuple[str, ...] | None = None  # the names of ImageSet.factors' columns
    schema: TableSchema | None = None  # a table's columns by kind (data/columns.py); None for images

    @property
    def table_schema(self) -> TableSchema:
        """A table's columns: its schema, or every column a number."""
        return self.schema if self.schema is not None else TableSchema.numeric(self.columns or ())

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape

    @property
    def is_table(self) -> bool:
        return self.train.is_table


def hold_out(images: ImageSet, count: int, seed: int, what: str) -> tuple[ImageSet, ImageSet]:
    """Split a seeded random `count` images off `images`; returns (rest, held_out)."""
    if count >= len(images):
        raise VaekitError(f"cannot hold out {count} {what} images from {len(images)}: lower --val-size or add images")
    order = np.random.default_rng(seed).permutation(len(images))
    return images.take(np.sort(order[count:])), images.take(np.sort(order[:count]))


def of_classes(items: ImageSet, classes: tuple[int, ...], what: str) -> ImageSet:
    """The items of `items` whose label is one of `classes` (one-class training: --normal-classes)."""
    if items.labels is None:
        raise VaekitError(
            f"--normal-classes picks items by their labels, and the {what} split has none: give labelled data "
            "(a built-in set, class sub-folders, an npz with y, a table's --label-column)"
        )
    kept = np.flatnonzero(np.isin(items.labels, classes))
    if len(kept) == 0 and len(items):
        known = sorted(set(items.labels.tolist()))
        raise VaekitError(
            f"--normal-classes {','.join(map(str, classes))} matches no item of the {what} split, whose labels are "
            f"{known[:20]}: name classes the data has"
        )
    return items.take(kept)
