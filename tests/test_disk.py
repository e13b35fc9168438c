"""Image sets on disk: conversion, reading, and training that matches in-memory training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import folders as folders_module
from vaekit.data import load_dataset
from vaekit.data.disk import DiskImages, is_converted, open_converted, write_converted
from vaekit.data.folders import load_folder
from vaekit.errors import VaekitError
from vaekit.models import build_run_model
from vaekit.training.loop import train_model


def converted(tmp_path: Path, n: int = 300) -> tuple[Path, np.ndarray, np.ndarray]:
    images, labels = blob_images(n, side=12)
    batches = (images[s : s + 64] for s in range(0, n, 64))
    return write_converted(tmp_path / "set", batches, (1, 12, 12), labels, ("a", "b", "c", "d")), images, labels


def test_round_trip_and_views(tmp_path: Path) -> None:
    folder, images, labels = converted(tmp_path)
    disk, got_labels, names = open_converted(folder)
    assert isinstance(disk, DiskImages) and disk.shape == (300, 1, 12, 12)
    assert names == ("a", "b", "c", "d") and np.array_equal(got_labels, labels)
    order = np.array([5, 0, 299, 5])
    assert np.array_equal(disk.read(order), images[order])
    view = disk.take(np.array([10, 20, 30, 40]))
    assert np.array_equal(view.read(np.array([3, 0])), images[[40, 10]])
    assert np.array_equal(disk[7:11], images[7:11]) and np.array_equal(np.asarray(view), images[[10, 20, 30, 40]])


def test_a_cut_short_set_is_refused(tmp_path: Path) -> None:
    folder, _, _ = converted(tmp_path)
    data = folder / "images.u8"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(VaekitError, match="conversion was interrupted"):
        open_converted(folder)
    (folder / "vaekit-images.json").unlink()  # the header is written last
    assert not is_converted(folder)


def _config(dataset: Path) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset=str(dataset), val_size=30),
        model=ModelConfig(hidden_sizes=(16,), latent_dim=2),
        train=TrainConfig(epochs=2, batch_size=16, checkpoint_every=0),
    )


def _train(config: RunConfig) -> dict[str, torch.Tensor]:
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    model = build_run_model(config, splits.shape)
    train_model(model, splits, config, progress=False)
    return model.state_dict()


def test_training_from_disk_equals_training_from_memory(tmp_path: Path) -> None:
    folder, images, labels = converted(tmp_path)
    np.savez(tmp_path / "same.npz", x=images[:, 0], y=labels)
    splits = load_dataset(_config(folder).data, progress=False)
    assert isinstance(splits.train.images, DiskImages)  # streamed, not loaded
    assert isinstance(splits.val.images, np.ndarray) and isinstance(splits.test.images, np.ndarray)
    from_disk, from_memory = _train(_config(folder)), _train(_config(tmp_path / "same.npz"))
    for name in from_memory:
        assert torch.equal(from_disk[name], from_memory[name]), name


def _folder_of_pngs(root: Path, n: int = 40) -> Path:
    images, labels = blob_images(n, side=10)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(root / f"class{label}" / f"{i:03d}.png")
    return root


def test_a_folder_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder_of_pngs(tmp_path / "pngs")
    first, names = load_folder(root, None, None)
    assert first.shape == (1, 10, 10) and names == ("class0", "class1", "class2", "class3")

    def no_decoding(*args: object) -> np.ndarray:
        raise AssertionError("images decoded again")

    monkeypatch.setattr(folders_module, "_pixels", no_decoding)
    again, _ = load_folder(root, None, None)
    assert np.array_equal(again.images, first.images)
    os.utime(root / "class0" / sorted(os.listdir(root / "class0"))[0], ns=(1, 1))  # a changed file
    with pytest.raises(AssertionError, match="decoded again"):
        load_folder(root, None, None)


def test_a_large_folder_streams_from_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folders_module, "IN_MEMORY_BYTES", 0)
    root = _folder_of_pngs(tmp_path / "pngs", n=80)
    splits = load_dataset(DataConfig(dataset=str(root)), progress=False)
    assert isinstance(splits.train.images, DiskImages)
    config = RunConfig(
        data=DataConfig(dataset=str(root)),
        model=ModelConfig(hidden_sizes=(8,), latent_dim=2),
        train=TrainConfig(epochs=1, batch_size=8, checkpoint_every=0),
    )
    reports = train_model(build_run_model(config, splits.shape), splits, config, progress=False)
    assert np.isfinite(reports[0].val.nelbo_nats)
