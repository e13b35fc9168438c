"""--tensorboard: read back with TensorBoard's own reader, every step once, epoch figures equal to
metrics.jsonl, and a run that crashed and resumed logs no step twice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.training.api import fit, resume

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

SETTINGS = {"epochs": 2, "batch_size": 50, "hidden_sizes": (32,), "latent_dim": 4, "checkpoint_every": 0}
STEPS_PER_EPOCH = 480 // 50 + 1  # 600 blobs: 480 train (10% test, 10% validation), the last batch short


def read_events(folder: Path) -> event_accumulator.EventAccumulator:
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return blob_images(600, side=12)[0]


def test_steps_epochs_and_pictures_are_logged(images: np.ndarray, tmp_path: Path) -> None:
    board = tmp_path / "board"
    run = fit(images, out=tmp_path / "run", tensorboard=str(board), **SETTINGS)  # type: ignore[arg-type]
    events = read_events(board)
    steps = [e.step for e in events.Scalars("train/loss_nats")]
    assert steps == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    metrics = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    epoch_losses = [e.value for e in events.Scalars("epoch/train_loss_nats")]
    np.testing.assert_allclose(epoch_losses, [m["train_loss_nats"] for m in metrics], rtol=1e-6)
    np.testing.assert_allclose(
        [e.value for e in events.Scalars("epoch/val_nelbo_nats")], [m["val_nelbo_nats"] for m in metrics], rtol=1e-6
    )
    # the steps' own losses average to the epoch's (the last batch is shorter, hence the weights)
    first_epoch = [e.value for e in events.Scalars("train/loss_nats")][:STEPS_PER_EPOCH]
    weights = [50] * (STEPS_PER_EPOCH - 1) + [480 - 50 * (STEPS_PER_EPOCH - 1)]
    assert np.average(first_epoch, weights=weights) == pytest.approx(metrics[0]["train_loss_nats"], rel=1e-5)
    assert len(events.Scalars("latent/active_units")) == 2
    assert len(events.Scalars("latent_kl_per_dim/z003")) == 2
    assert {"recon", "samples"} <= set(events.Tags()["images"])


class CrashAtStep:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, report: object) -> None:
        if getattr(report, "step") == self.step:  # noqa: B009  # the report is StepReport
            raise RuntimeError("the machine went away")

    def on_epoch_end(self, model: object, report: object) -> None:
        pass


def test_a_crashed_and_resumed_run_logs_every_step_once(images: np.ndarray, tmp_path: Path) -> None:
    board = tmp_path / "board"
    crash = STEPS_PER_EPOCH + 4  # inside epoch 2, after the end-of-epoch-1 snapshot
    with pytest.raises(RuntimeError, match="went away"):
        fit(images, out=tmp_path / "run", tensorboard=str(board), callbacks=[CrashAtStep(crash)], **SETTINGS)  # type: ignore[arg-type]
    assert [e.step for e in read_events(board).Scalars("train/loss_nats")][-1] == crash  # logged past the snapshot
    resume(tmp_path / "run")
    steps = [e.step for e in read_events(board).Scalars("train/loss_nats")]
    assert steps == list(range(1, 2 * STEPS_PER_EPOCH + 1))  # the steps after the snapshot were purged, then redone


def test_without_the_package_the_flag_is_one_clear_line(
    images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from vaekit.cli import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if it were not installed
    np.save(tmp_path / "blobs.npy", images[:, 0])
    flags = ["--tensorboard", str(tmp_path / "tb"), "--epochs", "1", "--batch-size", "50", "--out", str(tmp_path / "r")]
    assert main(["train", "--dataset", str(tmp_path / "blobs.npy"), *flags]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorboard" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "tb").exists()
