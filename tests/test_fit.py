"""vaekit.fit on data in memory: every accepted form gives the same stored data and splits as the
same data in a file, and the run works from the CLI afterwards (it keeps its data)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.config import DataConfig
from vaekit.data import load_dataset
from vaekit.data.memory import from_memory
from vaekit.data.tables import Table
from vaekit.errors import VaekitError
from vaekit.training.api import fit, resume
from vaekit.training.loop import TrainingInterrupted

FAST = {"epochs": 1, "batch_size": 16, "latent_dim": 3, "hidden_sizes": (32,)}


class PairDataset(Dataset[tuple[torch.Tensor, int]]):
    """A map-style dataset as users write them: float images in [0, 1] and an int label."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[index]).float() / 255.0, int(self.labels[index])


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return blob_images(90, side=12)  # uint8 (N, 1, 12, 12), labels (N,)


def test_every_form_of_images_gives_the_same_stored_data(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = blobs
    floats = images.astype(np.float32) / 255.0
    forms = {
        "uint8 array": (images, labels),
        "float tensor": (torch.from_numpy(floats), torch.from_numpy(labels)),
        "(N, H, W)": (images[:, 0], labels),
        "Dataset": (PairDataset(images, labels), None),
        "DataLoader": (
            DataLoader(TensorDataset(torch.from_numpy(floats), torch.from_numpy(labels)), batch_size=7),
            None,
        ),
    }
    for name, (data, given) in forms.items():
        stored, _ = from_memory(data, given)
        assert not isinstance(stored, Table), name
        np.testing.assert_array_equal(stored.images, images, err_msg=name)
        assert stored.labels is not None and stored.labels.tolist() == labels.tolist(), name


def test_text_labels_become_class_names_and_tables_keep_column_names() -> None:
    features = np.random.default_rng(0).normal(size=(12, 3))
    table, names = from_memory(features, ["b", "a", "c"] * 4, columns=["p", "q", "r"])
    assert isinstance(table, Table) and table.columns == ("p", "q", "r")
    assert names == ("a", "b", "c") and table.labels is not None and table.labels[:3].tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    ("data", "labels", "message"),
    [
        (np.zeros((10, 2, 5, 5), dtype=np.uint8), None, "C = 1 or 3"),
        (np.full((10, 1, 5, 5), 2.0), None, r"floats must lie in \[0, 1\]"),
        (np.zeros((10, 5, 5), dtype=np.uint8), [1, 2], "2 labels for 10 items"),
        (np.zeros(10), None, "vectors"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [4.0, 5.0]]), None, "give a finite number"),
    ],
)
def test_bad_data_from_python_is_named(data: np.ndarray, labels: object, message: str) -> None:
    with pytest.raises(VaekitError, match=message):
        from_memory(data, labels)


def test_fit_splits_like_the_same_data_in_a_file_and_the_run_lives_on(
    blobs: tuple[np.ndarray, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = blobs
    run = fit(torch.from_numpy(images), labels, out=tmp_path / "run", **FAST)  # type: ignore[arg-type]
    assert run.summary["test_images"] == 9 and (tmp_path / "run" / "data.npz").is_file()
    np.savez(tmp_path / "same.npz", x=images[:, 0], y=labels)
    from_file = load_dataset(DataConfig(dataset=str(tmp_path / "same.npz")))
    from_run = run.load_data()
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(from_run, split).array, getattr(from_file, split).array)
    # the CLI works on it, also after the run folder has moved
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "run", moved)
    assert main(["evaluate", "--run", str(moved), "--k", "5", "--no-quality"]) == 0
    assert json.loads((moved / "eval.json").read_text())["images"] == 9
    capsys.readouterr()


def test_a_fit_whose_stored_images_fit_both_layouts_reloads_its_own_data(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(60, 3, 3, 5), dtype=np.uint8)  # (N, C, H, W)
    run = fit(images, out=tmp_path / "run", **FAST)  # type: ignore[arg-type]
    # data.npz keeps them as (60, 3, 5, 3), which could be either layout; the run says which.
    assert run.config.data.array_layout == "nhwc"
    again = run.load_data()
    assert again.shape == (3, 3, 5)
    assert set(map(bytes, again.test.images)) <= set(map(bytes, images))  # the very images given


def test_fit_on_a_table_standardises_and_takes_callbacks(tmp_path: Path) -> None:
    sklearn = pytest.importorskip("sklearn.datasets")
    cancer = sklearn.load_breast_cancer()
    seen: list[int] = []

    class Count:
        def on_epoch_end(self, model: torch.nn.Module, report: object) -> None:
            seen.append(getattr(report, "epoch"))  # noqa: B009  # the report is EpochReport

    run = fit(cancer.data, cancer.target, out=tmp_path / "t", callbacks=[Count()], epochs=2, batch_size=32)
    assert run.config.preset == "table" and seen == [1, 2]
    data = run.config.data
    assert data.feature_mean is not None and data.feature_std is not None
    train = run.load_data().train.array.reshape(-1, 30)
    np.testing.assert_allclose(data.feature_mean, train.mean(0), rtol=1e-4)
    np.testing.assert_allclose(data.feature_std, train.std(0), rtol=1e-4)


def test_fit_refuses_unknown_settings_and_never_replaces_a_run(tmp_path: Path) -> None:
    images, _ = blob_images(40, side=8)
    with pytest.raises(VaekitError, match="no setting 'epoch'"):
        fit(images, out=tmp_path / "a", epoch=3)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(VaekitError, match="already exists"):
        fit(images, out=tmp_path / "b", **FAST)  # type: ignore[arg-type]
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"
    with pytest.raises(VaekitError, match=r"data from Python is \(N, C, H, W\)"):
        fit(images, out=tmp_path / "c", array_layout="nhwc", **FAST)  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()


class InterruptAfterEpoch:
    """Ctrl-C as the user would press it, at the end of the given epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, model: torch.nn.Module, report: object) -> None:
        if getattr(report, "epoch") == self.epoch:  # noqa: B009  # the report is EpochReport
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_fit_resumes_to_the_same_weights(tmp_path: Path) -> None:
    features = np.random.default_rng(3).normal(size=(300, 5)) * [1.0, 2.0, 3.0, 4.0, 5.0]
    settings = {"epochs": 3, "batch_size": 32, "checkpoint_every": 0}
    fit(features, out=tmp_path / "reference", **settings)  # type: ignore[arg-type]
    with pytest.raises(TrainingInterrupted):
        fit(features, out=tmp_path / "run", callbacks=[InterruptAfterEpoch(1)], **settings)  # type: ignore[arg-type]
    assert not (tmp_path / "run" / "summary.json").exists()
    resumed = resume(tmp_path / "run")
    assert resumed.summary["best_epoch"] == 3
    expected = load_file(str(tmp_path / "reference" / "checkpoints" / "last.safetensors"))
    got = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.slow
def test_the_cli_trains_on_a_float_npy_of_images_and_uses_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.loading import load_run
    from vaekit.serve.explorer import LatentExplorer

    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    np.save(tmp_path / "digits.npy", (digits.images / 16.0).astype(np.float32))  # (1797, 8, 8) in [0, 1]
    run = tmp_path / "run"
    flags = ["--epochs", "2", "--latent-dim", "4", "--batch-size", "64", "--quiet", "--out", str(run)]
    assert main(["train", "--dataset", str(tmp_path / "digits.npy"), *flags]) == 0
    assert json.loads((run / "config.json").read_text())["image_shape"] == [1, 8, 8]
    assert main(["evaluate", "--run", str(run), "--k", "10", "--no-quality"]) == 0
    assert main(["sample", "--run", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    loaded = load_run(run)
    decoded = LatentExplorer(loaded, loaded.load_data()).decode([0.0] * 4)
    assert decoded["image"].startswith("data:image/png") and "values" not in decoded
    capsys.readouterr()
