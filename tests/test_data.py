import dataclasses
import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tests.conftest import blob_images, write_idx_dataset
from vaekit.config import DataConfig
from vaekit.data import load_dataset
from vaekit.data.arrays import to_uint8_images
from vaekit.data.builtin import BUILTINS, cache_dir, fetch, locate
from vaekit.data.download import download
from vaekit.data.idx import encode_idx
from vaekit.data.transforms import convert_channels, resize_images, to_model_input, to_unit_range
from vaekit.errors import VaekitError

# --- built-in datasets ---------------------------------------------------------------------------


def test_builtin_from_data_dir_with_val_split(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "d", n_train=300, n_test=60)
    splits = load_dataset(DataConfig(dataset="mnist", data_dir=str(tmp_path / "d"), val_size=50))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (250, 50, 60)
    assert splits.shape == (1, 28, 28) and splits.train.images.dtype == np.uint8
    assert splits.train.labels is not None and splits.class_names == BUILTINS["mnist"].class_names
    # The validation images are held out of training, and the split is the same every time.
    train_rows = {row.tobytes() for row in splits.train.images}
    assert not any(row.tobytes() in train_rows for row in splits.val.images)
    again = load_dataset(DataConfig(dataset="mnist", data_dir=str(tmp_path / "d"), val_size=50))
    assert np.array_equal(again.val.images, splits.val.images)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = write_idx_dataset(tmp_path / "first", gz=False)
    second = write_idx_dataset(tmp_path / "env" / "mnist")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    assert locate("mnist") == second  # $VAEKIT_DATA/<name>
    assert locate("mnist", data_dir=str(first)) == first  # --data-dir wins
    monkeypatch.delenv("VAEKIT_DATA")
    write_idx_dataset(cache_dir("mnist"))
    assert locate("mnist") == cache_dir("mnist")


def test_missing_builtin_offline_says_how_to_get_it() -> None:
    with pytest.raises(VaekitError, match=r"apt-get install dataset-fashion-mnist") as info:
        fetch("fashion-mnist")
    assert str(cache_dir("fashion-mnist")) in str(info.value)


def test_mismatched_label_file_is_named(tmp_path: Path) -> None:
    folder = write_idx_dataset(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(np.zeros(7, dtype=np.uint8))))
    with pytest.raises(VaekitError, match=r"t10k-labels-idx1-ubyte\.gz holds"):
        load_dataset(DataConfig(dataset="mnist", data_dir=str(folder), val_size=10))


# --- downloads over loopback ---------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()


def test_download_verifies_checksum_and_writes_atomically(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    url, served = mirror
    payload = bytes(range(256)) * 1000
    (served / "f.bin").write_bytes(payload)
    target = tmp_path / "cache" / "f.bin"
    download(url + "f.bin", target, hashlib.sha256(payload).hexdigest(), progress=False)
    assert target.read_bytes() == payload
    bad = tmp_path / "cache" / "g.bin"
    with pytest.raises(VaekitError, match="SHA-256"):
        download(url + "f.bin", bad, "0" * 64, progress=False)
    with pytest.raises(VaekitError, match="failed"):
        download(url + "missing.bin", bad, "0" * 64, progress=False)
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no partial files left


def test_fetch_uses_the_mirror_and_checks_every_file(
    tmp_path: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    write_idx_dataset(served)
    sums = {
        role: hashlib.sha256((served / f"{name}.gz").read_bytes()).hexdigest()
        for role, name in [
            ("train_images", "train-images-idx3-ubyte"),
            ("train_labels", "train-labels-idx1-ubyte"),
            ("test_images", "t10k-images-idx3-ubyte"),
            ("test_labels", "t10k-labels-idx1-ubyte"),
        ]
    }
    monkeypatch.setitem(BUILTINS, "mnist", dataclasses.replace(BUILTINS["mnist"], sha256=sums, mirrors=()))
    monkeypatch.setenv("VAEKIT_OFFLINE", "0")
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    assert fetch("mnist", progress=False) == cache_dir("mnist")
    assert locate("mnist") == cache_dir("mnist")
    # A file the mirror serves wrongly is refused and leaves nothing behind.
    for f in cache_dir("mnist").iterdir():
        f.unlink()
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(VaekitError, match="SHA-256"):
        fetch("mnist", progress=False)
    assert not (cache_dir("mnist") / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in cache_dir("mnist").iterdir() if p.name.startswith(".")]


# --- the user's own data -------------------------------------------------------------------------


def _save_images(root: Path, count: int, size: tuple[int, int], mode: str = "L", sub: str = "") -> None:
    folder = root / sub
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(folder / f"img{i}.png")


def test_image_folder_with_labels_and_resizing(tmp_path: Path) -> None:
    _save_images(tmp_path / "imgs", 12, (40, 30), "RGB", sub="cats")
    _save_images(tmp_path / "imgs", 8, (30, 40), "RGB", sub="dogs/nested")
    splits = load_dataset(DataConfig(dataset=str(tmp_path / "imgs"), image_size=16))
    assert splits.shape == (3, 16, 16)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 20
    assert splits.class_names == ("cats", "dogs")
    grey = load_dataset(DataConfig(dataset=str(tmp_path / "imgs"), image_size=16, channels=1))
    assert grey.shape == (1, 16, 16)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaekitError, match=r"no \.png/\.jpg images"):
        load_dataset(DataConfig(dataset=str(tmp_path / "empty")))
    _save_images(tmp_path / "mixed", 3, (20, 20))
    _save_images(tmp_path / "mixed", 2, (24, 24), sub="b")
    with pytest.raises(VaekitError, match="--image-size"):
        load_dataset(DataConfig(dataset=str(tmp_path / "mixed")))
    _save_images(tmp_path / "one", 1, (20, 20))
    with pytest.raises(VaekitError, match="need at least 3"):
        load_dataset(DataConfig(dataset=str(tmp_path / "one")))
    _save_images(tmp_path / "broken", 3, (20, 20))
    (tmp_path / "broken" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(VaekitError, match=r"bad.png cannot be read"):
        load_dataset(DataConfig(dataset=str(tmp_path / "broken")))


def test_npz_and_npy(tmp_path: Path, blob_npz: Path) -> None:
    splits = load_dataset(DataConfig(dataset=str(blob_npz)))
    assert splits.shape == (1, 28, 28) and len(splits.test) == 24 and splits.train.labels is not None
    images, _ = blob_images(30, side=8, channels=3)
    floats = images.transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    np.save(tmp_path / "rgb.npy", floats)
    rgb = load_dataset(DataConfig(dataset=str(tmp_path / "rgb.npy")))
    assert rgb.shape == (3, 8, 8)
    assert np.abs(rgb.train.images.astype(int)).max() <= 255


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("channels", [1, 3])
def test_pytorch_and_channels_last_arrays_read_as_the_same_images(tmp_path: Path, suffix: str, channels: int) -> None:
    images, labels = blob_images(30, side=8, channels=channels)  # uint8 (N, C, H, W)
    floats = images.astype(np.float32) / 255.0
    layouts = {"nchw": floats, "nhwc": floats.transpose(0, 2, 3, 1)}
    for name, array in layouts.items():
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(path, array)
        else:
            np.savez(path, x=array, y=labels)
        splits = load_dataset(DataConfig(dataset=str(path)))
        assert splits.layout == name and splits.shape == (channels, 8, 8)
        every = np.concatenate([splits.train.images, splits.val.images, splits.test.images])
        assert sorted(map(bytes, every)) == sorted(map(bytes, images))  # the same images, not a scrambled axis


def test_an_array_that_fits_both_layouts_is_refused_unless_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(20, 3, 5, 3), dtype=np.uint8)  # (N, C=3, H=5, W=3) or (N, H=3, W=5, C=3)
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(VaekitError, match=r"could be .* say which with --array-layout nhwc or --array-layout nchw"):
        load_dataset(DataConfig(dataset=str(tmp_path / "a.npy")))
    first = load_dataset(DataConfig(dataset=str(tmp_path / "a.npy"), array_layout="nchw", val_size=0))
    last = load_dataset(DataConfig(dataset=str(tmp_path / "a.npy"), array_layout="nhwc", val_size=0))
    assert first.shape == (3, 5, 3) and last.shape == (3, 3, 5)
    assert first.layout == "nchw" and last.layout == "nhwc"
    # The same stored rows under either reading (the split depends only on N): channels taken from
    # axis 1 in one, from axis 3 in the other.
    assert np.array_equal(last.test.images, first.test.images.transpose(0, 3, 1, 2))
    assert not np.array_equal(first.test.images, array[: len(first.test)])  # a real split, not the first rows


@pytest.mark.parametrize(("layout", "shape"), [("nchw", (6, 8, 8, 1)), ("nhwc", (6, 1, 8, 8))])
def test_a_named_layout_that_does_not_fit_is_refused(tmp_path: Path, layout: str, shape: tuple[int, ...]) -> None:
    np.save(tmp_path / "a.npy", np.zeros(shape, dtype=np.uint8))
    with pytest.raises(VaekitError, match=f"check --array-layout {layout}"):
        load_dataset(DataConfig(dataset=str(tmp_path / "a.npy"), array_layout=layout))  # type: ignore[arg-type]


def test_a_layout_for_a_table_or_folder_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(20, 4)))
    with pytest.raises(VaekitError, match="--array-layout nchw apply to images only"):
        load_dataset(DataConfig(dataset=str(tmp_path / "rows.npy"), array_layout="nchw"))
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    with pytest.raises(VaekitError, match=r"--array-layout applies to \.npy/\.npz"):
        load_dataset(DataConfig(dataset=str(tmp_path / "imgs"), array_layout="nhwc"))
    with pytest.raises(VaekitError, match="mnist is built in: leave it out"):
        load_dataset(DataConfig(dataset="mnist", array_layout="nchw"))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((4, 5, 5), 2.0, dtype=np.float32), r"floats must lie in \[0, 1\]"),
        (np.full((4, 5, 5), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((4, 5, 5), dtype=np.int32), "dtype int32"),
        (np.zeros((4, 5, 5, 2), dtype=np.uint8), "C = 1 or 3"),
        (np.zeros((4, 2, 5, 5), dtype=np.uint8), r"or \(N, C, H, W\) with C = 1 or 3"),
        (np.zeros(5, dtype=np.uint8), "expected"),
        (np.zeros((5, 5), dtype=np.uint8), "constant"),  # 2-D is a table of vectors
    ],
)
def test_bad_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(VaekitError, match=message):
        load_dataset(DataConfig(dataset=str(tmp_path / "a.npy")))


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(VaekitError, match="pickled"):
        load_dataset(DataConfig(dataset=str(tmp_path / "obj.npy")))


def test_unknown_dataset() -> None:
    with pytest.raises(VaekitError, match="unknown dataset 'fashion_mnist'"):
        load_dataset(DataConfig(dataset="fashion_mnist"))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int16]),
        shape=hnp.array_shapes(min_dims=1, max_dims=5, max_side=4),
    )
)
def test_random_arrays_raise_only_vaekit_errors(array: np.ndarray) -> None:
    try:
        out = to_uint8_images(array, "test")
    except VaekitError:
        return
    assert out.dtype == np.uint8 and out.ndim == 4


# --- transforms ----------------------------------------------------------------------------------


def test_model_input_ranges_and_binarisation() -> None:
    batch = torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8)
    unit = to_model_input(batch, DataConfig())
    assert torch.allclose(unit, torch.tensor([[[[0.0, 0.2, 1.0]]]]))
    symmetric = to_model_input(batch, DataConfig(pixel_range="symmetric"))
    assert torch.allclose(symmetric, torch.tensor([[[[-1.0, -0.6, 1.0]]]]))
    assert torch.allclose(to_unit_range(symmetric, DataConfig(pixel_range="symmetric")), unit)
    many = torch.full((20000, 1, 1, 1), 51, dtype=torch.uint8)
    binary = to_model_input(many, DataConfig(binarize=True), torch.Generator().manual_seed(0))
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert binary.mean().item() == pytest.approx(0.2, abs=0.01)


def test_resize_and_channels() -> None:
    images, _ = blob_images(3, side=28)
    resized = resize_images(images, 32)
    assert resized.shape == (3, 1, 32, 32) and resized.dtype == np.uint8
    assert abs(float(resized.mean()) - float(images.mean())) < 2.0
    rgb = convert_channels(images, 3)
    assert rgb.shape == (3, 3, 28, 28)
    assert np.array_equal(convert_channels(rgb, 1), images)
