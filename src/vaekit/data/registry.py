"""Turn a `DataConfig` into train / validation / test splits of uint8 images or float vectors.

Validation and test sets are always in memory; the training set of a converted (on-disk) image
set stays on disk and is read batch by batch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.arrays import load_array_file
from vaekit.data.builtin import BUILTINS, FILE_NAMES, FILE_ROLES, cache_dir, how_to_get, load_builtin, locate
from vaekit.data.columns import TableSchema
from vaekit.data.disk import DiskImages, is_converted, open_converted
from vaekit.data.dsprites import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    SHAPE_NAMES,
    is_original,
    load_dsprites,
    open_dsprites,
    open_original,
)
from vaekit.data.folders import load_folder
from vaekit.data.splits import DatasetSplits, ImageSet, hold_out, of_classes
from vaekit.data.tables import Table, read_csv_table, read_parquet_table, schema_of
from vaekit.data.transforms import convert_channels, resize_images
from vaekit.errors import VaekitError

BUILTIN_VAL_SIZE = 5000
# Built-in sets that vaekit renders itself instead of reading files (data/dsprites.py).
GENERATED = ("dsprites",)
BUILTIN_NAMES = (*BUILTINS, *GENERATED)
GENERATED_TEST_SIZE = 10_000  # held out once (at most a tenth), with a fixed seed: every run tests on the same images
GENERATED_TEST_SEED = 0
DSPRITES_SIZES = FACTOR_SIZES  # the factor grid rendered (tests render a smaller one)
OWN_DATA_HOLDOUT_FRACTION = 0.1
# Validation and test sets are held in memory; past this size they only cost time, not accuracy.
MAX_OWN_HOLDOUT = 10_000


def _conform(images: ImageSet, config: DataConfig) -> ImageSet:
    if images.is_table:
        return images  # load_dataset has refused image settings for a table
    if isinstance(images.images, DiskImages):
        if config.image_size is not None and images.shape[1:] != (config.image_size, config.image_size):
            raise VaekitError(
                f"a converted image set is stored at {images.shape[1]}x{images.shape[2]}: convert it again to "
                f"change --image-size, or leave --image-size out"
            )
        if config.channels is not None and images.shape[0] != config.channels:
            raise VaekitError(f"a converted image set has {images.shape[0]} channel(s): leave --channels out")
        return images
    array = images.images
    if config.channels is not None:
        array = convert_channels(array, config.channels)
    if config.image_size is not None:
        array = resize_images(array, config.image_size)
    return dataclasses.replace(images, images=array)


@dataclass(frozen=True)
class OwnFile:
    """A user's file or folder as read: every item, class names, a table's column names, and the
    layout a .npy/.npz file's images were read in (None for anything else)."""

    items: ImageSet
    class_names: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    layout: str | None = None
    factor_names: tuple[str, ...] | None = None
    schema: TableSchema | None = None


def _read_own(path: Path, config: DataConfig) -> OwnFile:
    data: ImageSet | Table
    suffix = path.suffix.lower()
    if config.array_layout != "auto" and (path.is_dir() or suffix not in (".npy", ".npz")):
        raise VaekitError(f"--array-layout applies to .npy/.npz image arrays, and {path} is not one: leave it out")
    if is_converted(path):
        disk_images, labels, class_names = open_converted(path)
        return OwnFile(ImageSet(disk_images, labels), class_names)
    if path.is_dir():
        images, class_names = load_folder(path, config.image_size, config.channels)
        return OwnFile(images, class_names)
    if is_original(path):  # DeepMind's dSprites file: converted to an on-disk set once
        return OwnFile(open_original(path, cache_dir("dsprites-file")), SHAPE_NAMES, factor_names=FACTOR_NAMES)
    class_names, layout, factor_names = None, None, None
    run_schema = schema_of(config)  # a trained run's columns; None while a run starts
    if suffix == ".csv":
        data = read_csv_table(path, config.label_column, run_schema, config.column_types)
        class_names = data.class_names
    elif suffix == ".parquet":
        data = read_parquet_table(path, config.label_column, run_schema, config.column_types)
        class_names = data.class_names
    elif suffix in (".npy", ".npz"):
        read = load_array_file(path, config.array_layout)
        data, class_names, layout, factor_names = read.data, read.class_names, read.layout, read.factor_names
    else:
        raise VaekitError(f"dataset {path} is neither a folder of images nor a .csv, .parquet, .npy or .npz file")
    if config.label_column is not None and suffix not in (".csv", ".parquet"):
        raise VaekitError("--label-column names a table's column: a .npy/.npz file gives labels as its `y` array")
    if isinstance(data, Table) and run_schema is not None and suffix in (".npy", ".npz") and not run_schema.all_numeric:
        # data from Python, kept as its encoding (data/memory.py): the run's schema names its columns
        if data.features.shape[1] != run_schema.width:
            raise VaekitError(
                f"{path} has {data.features.shape[1]} features where the run's columns encode to {run_schema.width}"
            )
        data = Table(data.features, run_schema.names, data.labels, data.class_names, run_schema)
    if config.column_types and not isinstance(data, Table):
        raise VaekitError(f"--column-types types a table's columns, and {path} holds images: leave it out")
    columns, schema = (data.columns, data.schema) if isinstance(data, Table) else (None, None)
    return OwnFile(as_item_set(data, config, str(path)), class_names, columns, layout, factor_names, schema)


def as_item_set(data: ImageSet | Table, config: DataConfig, source: str) -> ImageSet:
    """Images as they are; a table as its stored (N, 1, 1, D) items, refusing image-only settings."""
    if isinstance(data, ImageSet):
        return data
    if config.image_settings:
        raise VaekitError(
            f"{source} is a table of {data.features.shape[1]} features: {', '.join(config.image_settings)} "
            "apply to images only, leave them out"
        )
    return ImageSet(data.as_items(), data.labels)


def load_dataset(config: DataConfig, progress: bool = True) -> DatasetSplits:
    name = config.dataset
    class_names: tuple[str, ...] | None
    factor_names: tuple[str, ...] | None = None
    if name in BUILTIN_NAMES and config.array_layout != "auto":
        raise VaekitError(f"--array-layout applies to .npy/.npz image arrays, and {name} is built in: leave it out")
    if name in GENERATED:
        train_all, test, source = _load_generated(progress)
        val_size = config.val_size if config.val_size is not None else BUILTIN_VAL_SIZE
        class_names, factor_names = SHAPE_NAMES, FACTOR_NAMES
    elif name in BUILTINS:
        train_all, test, source = load_builtin(name, config.data_dir, progress=progress)
        val_size = config.val_size if config.val_size is not None else BUILTIN_VAL_SIZE
        class_names = BUILTINS[name].class_names
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise VaekitError(
                f"unknown dataset {name!r}: not a built-in ({', '.join(BUILTIN_NAMES)}) and no such file or folder"
            )
        own = _read_own(path, config)
        splits = split_own_data(own.items, config, name, str(path), own.class_names, own.columns)
        return dataclasses.replace(splits, layout=own.layout, factor_names=own.factor_names, schema=own.schema)
    splits = _finish_splits(train_all, test, val_size, config, name, source, class_names, None)
    return dataclasses.replace(splits, factor_names=factor_names)


def _load_generated(progress: bool) -> tuple[ImageSet, ImageSet, str]:
    """dSprites from the cache, rendered there first (about a minute, 3 GB): (train, test, folder)."""
    folder = cache_dir("dsprites")
    everything = open_dsprites(folder, DSPRITES_SIZES)  # the fingerprint is read once per load
    if everything is None:
        from vaekit.progress import progress_bar

        total = int(np.prod(DSPRITES_SIZES))
        with progress_bar(progress, total=total, desc="rendering dSprites", unit="img") as bar:
            everything = load_dsprites(folder, DSPRITES_SIZES, progress=bar.update)
    test_size = min(GENERATED_TEST_SIZE, len(everything) // 10)
    train_all, test = hold_out(everything, test_size, GENERATED_TEST_SEED, "test")
    return train_all, test.in_memory(), str(folder)


def load_items(config: DataConfig, progress: bool = False) -> tuple[ImageSet, tuple[str, ...] | None]:
    """Every item of `config.dataset` in its own order, unsplit, prepared as training prepared it
    (size, channels): a user's file or folder whole, a built-in set's official test images."""
    if config.dataset in GENERATED:
        _, test, _ = _load_generated(progress)
        return _conform(test, config), SHAPE_NAMES
    if config.dataset in BUILTINS:
        _, test, _ = load_builtin(config.dataset, config.data_dir, progress=progress)
        return _conform(test, config), BUILTINS[config.dataset].class_names
    path = Path(config.dataset).expanduser()
    if not path.exists():
        raise VaekitError(f"--dataset {config.dataset} does not exist: give a built-in name, a file or a folder")
    own = _read_own(path, config)
    return _conform(own.items.in_memory(), config), own.class_names


def split_own_data(
    everything: ImageSet,
    config: DataConfig,
    name: str,
    source: str,
    class_names: tuple[str, ...] | None = None,
    columns: tuple[str, ...] | None = None,
) -> DatasetSplits:
    """A user's whole data set -> splits: a seeded 10% (at most 10,000) for test, as many for
    validation unless --val-size says otherwise. Data from a file and the same data from Python
    split alike."""
    if len(everything) < 3:
        raise VaekitError(f"dataset {source} has {len(everything)} item(s): need at least 3 (train, validation, test)")
    holdout = max(1, min(MAX_OWN_HOLDOUT, round(OWN_DATA_HOLDOUT_FRACTION * len(everything))))
    train_all, test = hold_out(everything, holdout, config.split_seed, "test")
    val_size = config.val_size if config.val_size is not None else holdout
    return _finish_splits(train_all, test.in_memory(), val_size, config, name, source, class_names, columns)


def _finish_splits(
    train_all: ImageSet,
    test: ImageSet,
    val_size: int,
    config: DataConfig,
    name: str,
    source: str,
    class_names: tuple[str, ...] | None,
    columns: tuple[str, ...] | None,
) -> DatasetSplits:
    train, val = hold_out(train_all, val_size, config.split_seed + 1, "validation")
    val = val.in_memory()
    if config.normal_classes is not None:  # one-class training; the test split keeps every class
        train, val = (
            of_classes(part, config.normal_classes, what) for part, what in ((train, "training"), (val, "validation"))
        )
    if config.train_limit is not None:
        train = train.take(slice(0, config.train_limit))
    return DatasetSplits(
        name=name,
        source=source,
        train=_conform(train, config),
        val=_conform(val, config),
        test=_conform(test, config),
        class_names=class_names,
        columns=columns,
    )


def describe_builtins(data_dir: str | None = None) -> list[tuple[str, str]]:
    """(name, where found or how to get it) for `vaekit datasets`."""
    rows = []
    for name in BUILTINS:
        folder = locate(name, data_dir)
        if folder is not None:
            rows.append((name, f"found in {folder}"))
        else:
            rows.append((name, f"not found (downloads on first use); offline: {how_to_get(name, data_dir)}"))
    folder = cache_dir("dsprites")
    found = (folder / "dsprites.json").is_file()
    rows.append(("dsprites", f"generated in {folder}" if found else f"rendered into {folder} on first use (3 GB)"))
    return rows


__all__ = [
    "FILE_NAMES",
    "FILE_ROLES",
    "as_item_set",
    "describe_builtins",
    "load_dataset",
    "load_items",
    "split_own_data",
]
