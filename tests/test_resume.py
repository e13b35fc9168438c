"""Crash safety: a run killed at any moment resumes to bit-identical weights; Ctrl-C saves and
says how to resume; non-finite steps are skipped and never reach a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.data import transforms as transforms_module
from vaekit.models import build_run_model
from vaekit.training.loop import TrainingDiverged, train_model
from vaekit.training.run import train_run

TRAIN_FLAGS = [
    "--hidden-sizes",
    "256",
    "--latent-dim",
    "8",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--checkpoint-every",
    "7",
    "--val-size",
    "500",
    "--quiet",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(12000, side=28, seed=5)
    path = tmp_path_factory.mktemp("resume") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


def start_training(dataset: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vaekit", "train", "--dataset", str(dataset), *TRAIN_FLAGS, "--out", str(out)]
    return subprocess.Popen(
        [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}
    )


def resume(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_for_mid_epoch_snapshot(out: Path, process: subprocess.Popen[str], min_step: int = 20) -> dict:
    """Poll until a resumable snapshot taken inside an epoch exists; return its loop info."""
    path = out / "checkpoints" / "resume.safetensors"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        if path.exists():
            try:
                with safe_open(str(path), framework="pt") as handle:
                    info = json.loads(handle.metadata()["info"])
            except Exception:  # a rename can race with the read; look again
                info = None
            if info and info["batch_index"] > 0 and info["step"] >= min_step:
                return info
        time.sleep(0.005)
    raise AssertionError("no snapshot appeared")


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "last.safetensors"))


def metrics_without_times(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if "second" not in k} for line in lines]


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    process = start_training(dataset, out)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return out


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(dataset: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start_training(dataset, out)
    info = wait_for_mid_epoch_snapshot(out, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists()
    (out / "checkpoints" / ".last.safetensors.abc123.tmp").write_bytes(b"half a file")  # as a kill can leave
    result = resume(out)
    assert result.returncode == 0, result.stderr
    assert not list(out.rglob("*.tmp")), "resume should sweep temporary files a kill left behind"
    expected, got = final_weights(reference), final_weights(out)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming at step {info['step']}"
    assert metrics_without_times(out) == metrics_without_times(reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_nelbo_nats"] == json.loads((reference / "summary.json").read_text())["test_nelbo_nats"]


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_and_says_how_to_resume(
    dataset: Path, reference: Path, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    out = tmp_path / "run"
    process = start_training(dataset, out)
    wait_for_mid_epoch_snapshot(out, process, min_step=10)
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"continue with: vaekit train --resume {out}" in stderr
    result = resume(out)
    assert result.returncode == 0, result.stderr
    for name, tensor in final_weights(reference).items():
        assert torch.equal(tensor, final_weights(out)[name]), name


def small_config(dataset: Path, **train: object) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset=str(dataset), val_size=200, train_limit=1000),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=4),
        train=TrainConfig(epochs=2, batch_size=50, **train),  # type: ignore[arg-type]
    )


def test_a_nan_batch_is_skipped_and_training_goes_on(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config(dataset)
    splits = load_dataset(config.data, progress=False)
    model = build_run_model(config, splits.shape)
    real = transforms_module.to_model_input
    calls = {"n": 0}

    def poisoned(batch: torch.Tensor, data: DataConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        calls["n"] += 1
        x = real(batch, data, generator)
        return torch.full_like(x, float("nan")) if calls["n"] == 5 else x

    monkeypatch.setattr("vaekit.training.loop.to_model_input", poisoned)
    reports = train_model(model, splits, config, progress=False)
    assert [r.skipped_steps for r in reports] == [1, 0]
    assert reports[-1].step == 2 * 20 - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert reports[-1].val.nelbo_nats < reports[0].val.nelbo_nats


def test_skipped_steps_are_recorded_in_the_metrics(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = transforms_module.to_model_input
    calls = {"n": 0}

    def poisoned(batch: torch.Tensor, data: DataConfig, generator: torch.Generator | None = None) -> torch.Tensor:
        calls["n"] += 1
        x = real(batch, data, generator)
        return torch.full_like(x, float("nan")) if calls["n"] in (3, 4) else x

    monkeypatch.setattr("vaekit.training.loop.to_model_input", poisoned)
    result = train_run(small_config(dataset), tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["skipped_steps"] for line in lines] == [2, 0]


def test_a_diverging_learning_rate_stops_with_the_last_good_checkpoint(dataset: Path, tmp_path: Path) -> None:
    config = small_config(dataset, lr=1e6, max_bad_steps=3, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .* Lower --lr or set --clip-grad-norm"):
        train_run(config, tmp_path / "run", progress=False)
    files = list((tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert files, "the snapshot before divergence should be on disk"
    for path in files:
        assert all(torch.isfinite(t).all() for t in load_file(str(path)).values() if t.is_floating_point()), path


def test_gradient_clipping_saves_adam_from_one_huge_gradient(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch with pixels 1e5 times too large gives a finite but enormous gradient: unclipped,
    it fills Adam's second-moment estimate and learning stalls for thousands of steps; clipped to
    norm 100 (above every ordinary gradient here), training goes on as if it had not happened."""
    real = transforms_module.to_model_input

    def final_val(clip: float | None, spike: bool) -> list[float]:
        calls = {"n": 0}

        def spiking(batch: torch.Tensor, data: DataConfig, generator: torch.Generator | None = None) -> torch.Tensor:
            calls["n"] += 1
            x = real(batch, data, generator)
            return x * 1e5 if spike and calls["n"] == 3 else x

        monkeypatch.setattr("vaekit.training.loop.to_model_input", spiking)
        config = small_config(dataset, lr=1e-3, clip_grad_norm=clip)
        splits = load_dataset(config.data, progress=False)
        torch.manual_seed(0)
        reports = train_model(build_run_model(config, splits.shape), splits, config, progress=False)
        assert all(report.skipped_steps == 0 for report in reports)  # the spike is finite: it is applied
        return [report.val.nelbo_nats for report in reports]

    unspiked = final_val(None, spike=False)
    unclipped = final_val(None, spike=True)
    clipped = final_val(100.0, spike=True)
    assert final_val(100.0, spike=False) == unspiked  # ordinary gradients are below the clipping norm
    assert unclipped[1] > unclipped[0] - 5.0  # stalled: the second epoch learned nothing
    assert clipped[1] < clipped[0] - 30.0  # still learning
    assert clipped[1] < unclipped[1] - 50.0
    assert clipped[1] < unspiked[1] + 40.0
