"""The built-in MNIST-family datasets: where their files are looked for and how they are fetched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.data.download import download
from vaekit.data.idx import read_idx
from vaekit.data.splits import ImageSet
from vaekit.errors import VaekitError

FILE_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # of the .gz files, by role
    class_names: tuple[str, ...]
    debian_package: str | None = None


BUILTINS: dict[str, BuiltinDataset] = {
    "mnist": BuiltinDataset(
        name="mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        sha256={
            "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": BuiltinDataset(
        name="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train_images": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "train_labels": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "test_images": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "test_labels": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        debian_package="dataset-fashion-mnist",
    ),
}


def cache_dir(name: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vaekit" / name


def search_dirs(name: str, data_dir: str | None) -> list[Path]:
    """Folders searched, in order: --data-dir, $VAEKIT_DATA, the user cache, Debian's location.

    --data-dir and $VAEKIT_DATA may hold the files directly or in a sub-folder named after the set.
    """
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("VAEKIT_DATA")):
        if root:
            dirs += [Path(root).expanduser(), Path(root).expanduser() / name]
    dirs += [cache_dir(name), Path("/usr/share/datasets") / name]
    return dirs


def _file_in(folder: Path, role: str) -> Path | None:
    for candidate in (folder / FILE_NAMES[role], folder / f"{FILE_NAMES[role]}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(name: str, data_dir: str | None = None) -> Path | None:
    """The first folder that holds all four files (plain or .gz), or None."""
    for folder in search_dirs(name, data_dir):
        if all(_file_in(folder, role) for role in FILE_ROLES):
            return folder
    return None


def how_to_get(name: str, data_dir: str | None = None) -> str:
    spec = BUILTINS[name]
    files = ", ".join(f"{FILE_NAMES[r]}.gz" for r in FILE_ROLES)
    hint = f"put {files} into {cache_dir(name)} (or pass --data-dir / set VAEKIT_DATA)"
    if spec.debian_package:
        hint += f", or run `apt-get install {spec.debian_package}`"
    return hint


def fetch(name: str, progress: bool = True) -> Path:
    """Download the four files into the user cache, trying each mirror in turn.

    $VAEKIT_MIRROR, when set, is tried first (a local or corporate mirror); $VAEKIT_OFFLINE=1
    skips downloading altogether.
    """
    spec = BUILTINS[name]
    target_dir = cache_dir(name)
    if os.environ.get("VAEKIT_OFFLINE") == "1":
        raise VaekitError(f"{name} files not found and downloads are off (VAEKIT_OFFLINE=1): {how_to_get(name)}")
    mirrors = [m for m in (os.environ.get("VAEKIT_MIRROR"),) if m] + list(spec.mirrors)
    for role in FILE_ROLES:
        filename = f"{FILE_NAMES[role]}.gz"
        if (target_dir / filename).is_file():
            continue
        failures = []
        for mirror in mirrors:
            try:
                download(
                    mirror.rstrip("/") + "/" + filename, target_dir / filename, spec.sha256[role], progress=progress
                )
                break
            except VaekitError as exc:
                failures.append(str(exc))
        else:
            raise VaekitError(f"{name} files not found locally and {failures[-1]}; {how_to_get(name)}")
    return target_dir


def load_builtin(name: str, data_dir: str | None = None, progress: bool = True) -> tuple[ImageSet, ImageSet, str]:
    """(train, test, folder) of a built-in set, fetching it into the cache when it is nowhere."""
    folder = locate(name, data_dir) or fetch(name, progress=progress)
    arrays = {}
    for role in FILE_ROLES:
        path = _file_in(folder, role)
        assert path is not None  # locate() and fetch() guarantee all four
        arrays[role] = read_idx(path)
    sets = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file = _file_in(folder, f"{split}_images")
        if images.ndim != 3 or images.dtype != np.uint8:
            raise VaekitError(f"{image_file} should hold uint8 images (N, H, W), found {images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise VaekitError(
                f"{_file_in(folder, f'{split}_labels')} holds {labels.shape} labels for {len(images)} images "
                "in the same folder: the files do not belong together"
            )
        sets.append(ImageSet(images[:, None], labels.astype(np.int64)))  # (N, H, W) -> (N, 1, H, W)
    return sets[0], sets[1], str(folder)
