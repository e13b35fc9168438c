"""A folder of the user's own images (png/jpg, searched recursively) as one uint8 array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vaekit.data.splits import ImageSet
from vaekit.errors import VaekitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
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


def load_folder(
    root: str | Path, image_size: int | None, channels: int | None
) -> tuple[ImageSet, tuple[str, ...] | None]:
    root = Path(root)
    paths = list_images(root)
    if not paths:
        raise VaekitError(f"no .png/.jpg images found under {root}: point --dataset at a folder that has some")
    images: list[Image.Image] = []
    modes = set()
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
                modes.add(img.mode)
                images.append(img.copy())
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise VaekitError(f"image {path} cannot be read ({exc}): remove or replace it") from None
    if channels is None:
        channels = 1 if modes <= GREY_MODES else 3
    mode = "L" if channels == 1 else "RGB"
    sizes = {img.size for img in images}
    if image_size is None and len(sizes) > 1:
        examples = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
        raise VaekitError(
            f"images under {root} have {len(sizes)} different sizes ({examples}, ...): "
            "pass --image-size N to resize and centre-crop them all to NxN"
        )
    arrays = []
    for original in images:
        converted = original.convert(mode)
        if image_size is not None:
            converted = ImageOps.fit(converted, (image_size, image_size), method=Image.Resampling.LANCZOS)
        pixels = np.asarray(converted, dtype=np.uint8)
        arrays.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))  # -> (C, H, W)
    labels, names = _labels_from_subfolders(root, paths)
    return ImageSet(np.stack(arrays), labels), names
