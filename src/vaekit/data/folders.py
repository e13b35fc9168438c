"""A folder of the user's own images (png/jpg, searched recursively) as uint8 (N, C, H, W).

The folder is converted once into an on-disk set (data/disk.py) in the user cache, so a second
run starts at once and a folder larger than memory can be streamed."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vaekit.data.disk import is_converted, open_converted, write_converted
from vaekit.data.splits import ImageSet
from vaekit.errors import VaekitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CONVERT_BATCH = 1024
IN_MEMORY_BYTES = 1 << 30  # image sets up to 1 GiB are held in memory, larger ones stay on disk
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _labels_from_subfolders(root: Path, paths: list[Path]) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Sub-folder names become labels when every image sits in a sub-folder of `root`."""
    parts = [p.relative_to(root).parts for p in paths]
    if any(len(part) < 2 for part in parts):
        return None, None
    names = tuple(sorted({part[0] for part in parts}))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[part[0]] for part in parts], dtype=np.int64), names


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vaekit" / "folders"


def _survey(root: Path, paths: list[Path]) -> tuple[set[str], set[tuple[int, int]]]:
    """Modes and sizes from the image headers alone (no pixel decoding), failing on a bad file."""
    modes, sizes = set(), set()
    for path in paths:
        try:
            with Image.open(path) as img:
                modes.add(img.mode)
                sizes.add(img.size)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise VaekitError(f"image {path} cannot be read ({exc}): remove or replace it") from None
    return modes, sizes


def _pixels(path: Path, mode: str, image_size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as img:
            converted = img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VaekitError(f"image {path} cannot be read ({exc}): remove or replace it") from None
    if image_size is not None:
        converted = ImageOps.fit(converted, (image_size, image_size), method=Image.Resampling.LANCZOS)
    pixels = np.asarray(converted, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # -> (C, H, W)


def convert_folder(root: Path, image_size: int | None, channels: int | None) -> Path:
    """Convert a folder of images once into an on-disk uint8 set in the user cache; later calls
    with the same files and settings reuse it. Returns the converted set's folder."""
    paths = list_images(root)
    if not paths:
        raise VaekitError(f"no .png/.jpg images found under {root}: point --dataset at a folder that has some")
    modes, sizes = _survey(root, paths)
    if channels is None:
        channels = 1 if modes <= GREY_MODES else 3
    if image_size is None and len(sizes) > 1:
        examples = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise VaekitError(
            f"images under {root} have {len(sizes)} different sizes ({examples}, ...): "
            "pass --image-size N to resize and centre-crop them all to NxN"
        )
    digest = hashlib.sha256(f"{root.resolve()}|{image_size}|{channels}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    final = _cache_root() / digest.hexdigest()[:24]
    if is_converted(final):
        return final
    width, height = (image_size, image_size) if image_size is not None else next(iter(sizes))
    shape = (channels, height, width)
    mode = "L" if channels == 1 else "RGB"
    labels, names = _labels_from_subfolders(root, paths)
    batches = (
        np.stack([_pixels(path, mode, image_size) for path in paths[start : start + CONVERT_BATCH]])
        for start in range(0, len(paths), CONVERT_BATCH)
    )
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
    try:
        write_converted(partial, batches, shape, labels, names)
        os.replace(partial, final)  # a directory appears whole or not at all
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def load_folder(
    root: str | Path, image_size: int | None, channels: int | None
) -> tuple[ImageSet, tuple[str, ...] | None]:
    """The folder's images: in memory when small, else streamed from the converted set on disk."""
    disk_images, labels, names = open_converted(convert_folder(Path(root), image_size, channels))
    images = ImageSet(disk_images, labels)
    in_memory_bytes = len(disk_images) * disk_images.row_bytes
    return (images.in_memory() if in_memory_bytes <= IN_MEMORY_BYTES else images), names
