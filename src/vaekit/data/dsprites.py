"""A built-in dSprites: the factor grid of Matthey et al. 2017 (https://github.com/deepmind/dsprites-dataset)
rendered here, so it needs no download.

Five factors, in the original file's order with the last varying fastest: shape (square, ellipse,
heart), scale (6 values in [0.5, 1]), orientation (40 values in [0, 2π]), posX and posY (32 values
each in [0, 1]): 3 x 6 x 40 x 32 x 32 = 737,280 binary 64 x 64 images, every combination once.
(The original also lists a colour factor with one value; it is left out.)

How the pixels may differ from DeepMind's file: each shape is drawn here from an implicit curve
(a square of side 20 px, an ellipse of semi-axes 14 and 7 px, the heart (x² + y² - 1)³ = x² y³
at 11 px per unit, all at scale 1), coverage measured on a 4 x 4 grid per pixel and a pixel set
when at least half of it is covered; positions move the shape's centre over 32 whole pixels (16
to 47) in each direction. The original's sprites were drawn otherwise (its heart's outline, its
anti-aliasing before binarisation, its exact sizes and position range are its own), so the images
are the same factors, not the same pixels: published figures on dSprites are references here, not
exact equals.

The set is generated on first use into the cache as an on-disk image set (data/disk.py: 3 GB of
uint8, read batch by batch, so training never holds it in memory), with the factors beside it
and a SHA-256 of the images written last; a set whose generation was interrupted has no record
and is generated again.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vaekit.atomic import write_json
from vaekit.data.disk import DATA, is_converted, open_converted, write_converted
from vaekit.data.splits import ImageSet
from vaekit.errors import VaekitError

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
SIDE = 64
RADIUS = 16  # a sprite's patch reaches 16 px from its centre; centres run over 16..47
SUPERSAMPLE = 4
RECORD = "dsprites.json"
VERSION = 1  # of the rendering: a record of another version is generated again
FINGERPRINT_STRIDE = 97  # rows whose bytes are hashed on every load (the whole file at generation)


def factor_values() -> dict[str, np.ndarray]:
    """The value behind each factor index, as the original file's latents_values."""
    return {
        "shape": np.arange(1, 4, dtype=np.float64),
        "scale": np.linspace(0.5, 1.0, 6),
        "orientation": np.linspace(0.0, 2 * math.pi, 40),
        "posX": np.linspace(0.0, 1.0, 32),
        "posY": np.linspace(0.0, 1.0, 32),
    }


def all_factors(sizes: tuple[int, ...] = FACTOR_SIZES) -> np.ndarray:
    """Every combination of factor indices, the last varying fastest: (prod(sizes), F) int64."""
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def _inside(shape: int, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Whether points (u right, v down, in pixels from the centre, already rotated) lie inside."""
    if shape == 0:  # square
        half = 10.0 * scale
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == 1:  # ellipse
        return (u / (14.0 * scale)) ** 2 + (v / (7.0 * scale)) ** 2 <= 1.0
    unit = 11.0 * scale  # heart, its point downwards: y grows upwards
    x, y = u / unit, -v / unit
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def render_sprite(shape: int, scale: float, orientation: float) -> np.ndarray:
    """The sprite centred on the middle pixel of a (2 RADIUS + 1)² patch: bool (33, 33)."""
    size = 2 * RADIUS + 1
    offsets = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - (RADIUS + 0.5)  # pixel units, 0 at the centre
    v, u = np.meshgrid(offsets, offsets, indexing="ij")  # (33 S, 33 S): v down the rows, u across
    cos, sin = math.cos(orientation), math.sin(orientation)
    inside = _inside(shape, cos * u + sin * v, -sin * u + cos * v, scale)  # rotated by -orientation
    coverage = inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    return coverage >= 0.5


def sprite_images(shape: int, scale: float, orientation: float, positions: int = 32) -> np.ndarray:
    """The sprite at every position, posX outer and posY inner: uint8 (positions², 1, 64, 64), 0 or 255."""
    patch = render_sprite(shape, scale, orientation)
    canvas = np.zeros((SIDE + positions - 1, SIDE + positions - 1), dtype=np.uint8)
    # The patch's centre at (RADIUS + positions - 1) in both axes of the padded canvas: the window
    # starting at offset (a, b) puts it at row RADIUS + positions - 1 - a, column ... - b.
    centre = RADIUS + positions - 1
    canvas[centre - RADIUS : centre + RADIUS + 1, centre - RADIUS : centre + RADIUS + 1] = patch * 255
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (SIDE, SIDE))  # (P, P, 64, 64)
    # windows[a, b] has the centre at row RADIUS + P - 1 - a: reversed, [q, p] has it at row RADIUS + q
    # (posY q) and column RADIUS + p (posX p); posX outer, posY inner as in the original.
    by_position = windows[::-1, ::-1].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(by_position.reshape(positions * positions, 1, SIDE, SIDE))


def render(factors: np.ndarray) -> np.ndarray:
    """Images of given factor indices (N, 5) -> uint8 (N, 1, 64, 64): for tests and pictures."""
    values = factor_values()
    out = np.zeros((len(factors), 1, SIDE, SIDE), dtype=np.uint8)
    for i, (shape, scale, orientation, pos_x, pos_y) in enumerate(factors):
        patch = render_sprite(int(shape), float(values["scale"][scale]), float(values["orientation"][orientation]))
        row, col = RADIUS + int(pos_y), RADIUS + int(pos_x)
        out[i, 0, row - RADIUS : row + RADIUS + 1, col - RADIUS : col + RADIUS + 1] = patch * 255
    return out


def _batches(sizes: tuple[int, ...], digest: hashlib._Hash, progress: Callable[[int], None]) -> Iterator[np.ndarray]:
    values = factor_values()
    positions = sizes[3]
    for shape in range(sizes[0]):
        for scale in range(sizes[1]):
            for orientation in range(sizes[2]):
                images = sprite_images(shape, values["scale"][scale], values["orientation"][orientation], positions)
                digest.update(images.tobytes())
                progress(len(images))
                yield images


def _fingerprint(path: Path, total: int, row_bytes: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for row in range(0, total, FINGERPRINT_STRIDE):
            handle.seek(row * row_bytes)
            digest.update(handle.read(row_bytes))
    return digest.hexdigest()


def generate(
    folder: Path, sizes: tuple[int, ...] = FACTOR_SIZES, progress: Callable[[int], None] = lambda n: None
) -> Path:
    """Render the whole grid into `folder` (replacing what is there); the record goes last."""
    if sizes[3] != sizes[4]:
        raise ValueError("posX and posY take the same number of values")
    shutil.rmtree(folder, ignore_errors=True)
    digest = hashlib.sha256()
    factors = all_factors(sizes)
    write_converted(folder, _batches(sizes, digest, progress), (1, SIDE, SIDE), factors[:, 0], SHAPE_NAMES)
    np.save(folder / "factors.npy", factors.astype(np.int16))
    write_json(
        folder / RECORD,
        {
            "version": VERSION,
            "factor_names": list(FACTOR_NAMES),
            "factor_sizes": list(sizes),
            "sha256": digest.hexdigest(),
            "fingerprint": _fingerprint(folder / DATA, len(factors), SIDE * SIDE),
        },
    )
    return folder


def open_dsprites(folder: Path, sizes: tuple[int, ...] = FACTOR_SIZES) -> ImageSet | None:
    """The generated set in `folder` with its factors, or None when it is missing, of another
    version or damaged (then it is to be generated again)."""
    record_file = folder / RECORD
    if not (record_file.is_file() and is_converted(folder) and (folder / "factors.npy").is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
        if record.get("version") != VERSION or tuple(record["factor_sizes"]) != tuple(sizes):
            return None
        images, labels, _ = open_converted(folder)
        if _fingerprint(folder / DATA, images.total, SIDE * SIDE) != record["fingerprint"]:
            return None
        factors = np.load(folder / "factors.npy", allow_pickle=False).astype(np.int64)
    except (OSError, ValueError, KeyError, TypeError, VaekitError):
        return None
    if factors.shape != (images.total, len(FACTOR_NAMES)):
        return None
    return ImageSet(images, labels, factors)


def load_dsprites(
    folder: Path, sizes: tuple[int, ...] = FACTOR_SIZES, progress: Callable[[int], None] = lambda n: None
) -> ImageSet:
    """The dSprites set in `folder`, generated there first when it is not (yet) complete."""
    found = open_dsprites(folder, sizes)
    if found is not None:
        return found
    generate(folder, sizes, progress)
    made = open_dsprites(folder, sizes)
    if made is None:
        raise VaekitError(f"the dSprites set generated in {folder} does not read back: check the disk and try again")
    return made


# --- the original file, when a user has it ---------------------------------------------------------

ORIGINAL_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
ORIGINAL_KEYS = ("imgs.npy", "latents_classes.npy")
ORIGINAL_CHUNK = 8192  # rows read from the archive at a time: 32 MB


def is_original(path: Path) -> bool:
    """Whether `path` is DeepMind's dSprites file (or one like it), recognised by its arrays."""
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return all(key in archive.namelist() for key in ORIGINAL_KEYS)
    except (OSError, zipfile.BadZipFile):
        return False


def _original_rows(path: Path) -> Iterator[np.ndarray]:
    """The archive's `imgs` (N, 64, 64) of 0/1, streamed as uint8 (B, 1, 64, 64) of 0/255: the
    3 GB array is never in memory at once."""
    with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        if fortran or dtype != np.uint8 or len(shape) != 3 or shape[1:] != (SIDE, SIDE):
            raise VaekitError(f"{path}[imgs] is {dtype} {shape}: expected the dSprites images, uint8 (N, 64, 64)")
        left = shape[0]
        while left:
            rows = min(ORIGINAL_CHUNK, left)
            chunk = handle.read(rows * SIDE * SIDE)
            if len(chunk) != rows * SIDE * SIDE:
                raise VaekitError(f"{path} is truncated: download it again")
            pixels = np.frombuffer(chunk, dtype=np.uint8).reshape(rows, 1, SIDE, SIDE)
            yield (pixels > 0).astype(np.uint8) * 255
            left -= rows


def open_original(path: Path, cache: Path) -> ImageSet:
    """DeepMind's file as an on-disk set in `cache` (converted once, then reused while the file
    is unchanged), with its factors: latents_classes without the colour column."""
    with np.load(path, allow_pickle=False) as archive:  # its `metadata` is pickled: never read
        classes = np.asarray(archive["latents_classes"])
    if classes.ndim != 2 or classes.shape[1] != len(FACTOR_NAMES) + 1:
        raise VaekitError(f"{path}[latents_classes] has shape {classes.shape}: expected (N, 6) as in dSprites")
    stat = path.stat()
    folder = (
        cache / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}-{stat.st_size}-{stat.st_mtime_ns}"
    )
    if not is_converted(folder):
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        factors = classes[:, 1:].astype(np.int64)
        write_converted(partial, _original_rows(path), (1, SIDE, SIDE), factors[:, 0], SHAPE_NAMES)
        np.save(partial / "factors.npy", factors.astype(np.int16))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    images, labels, _ = open_converted(folder)
    factors = np.load(folder / "factors.npy", allow_pickle=False).astype(np.int64)
    if images.total != len(factors):
        raise VaekitError(f"{path} holds {images.total} images and {len(factors)} factor rows: download it again")
    return ImageSet(images, labels, factors)
