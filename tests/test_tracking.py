"""--track mlflow and --track wandb, read back through each tracker's own files: MLflow's client
over a local SQLite store, W&B's offline run file. Settings, every figure with its unit in its
name and the values vaekit wrote to metrics.jsonl and summary.json, pictures, the run folder,
and a resumed run continuing the same tracked run; the refusals, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.training.api import fit, resume
from vaekit.training.callbacks import EpochReport

mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")

from tests.wandb_records import history, of_kind  # noqa: E402  # needs wandb's protobuf classes


class StopAfter:
    """Ctrl-C after `epochs` epochs, as a user would press it."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, model: Any, report: EpochReport) -> None:
        if report.epoch == self.epochs:
            raise KeyboardInterrupt


def images() -> np.ndarray:
    return blob_images(240, side=8, seed=1)[0]


def metrics_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path / "wandb"


def test_mlflow_holds_the_settings_figures_pictures_and_folder_and_a_resume_continues_it(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the experiment made first with its artifacts here: MLflow's default is ./mlruns in the working folder
    mlflow.MlflowClient(tracking_uri=store).create_experiment("vaekit", artifact_location=str(tmp_path / "artifacts"))
    settings = {"epochs": 3, "latent_dim": 2, "hidden_sizes": (16,), "batch_size": 48, "track": (f"mlflow:{store}",)}
    with pytest.raises(KeyboardInterrupt):
        fit(images(), out=tmp_path / "run", callbacks=[StopAfter(2)], **settings)
    client = mlflow.MlflowClient(tracking_uri=store)
    (stopped,) = client.search_runs([client.get_experiment_by_name("vaekit").experiment_id])
    assert stopped.info.status == "KILLED" and stopped.data.params["train.epochs"] == "3"
    resume(tmp_path / "run")
    (tracked,) = client.search_runs([client.get_experiment_by_name("vaekit").experiment_id])
    assert tracked.info.run_id == stopped.info.run_id and tracked.info.status == "FINISHED"  # the same run
    rows = metrics_of(tmp_path / "run")
    val = client.get_metric_history(tracked.info.run_id, "val/nelbo_nats_per_image")
    assert [m.step for m in val] == [r["step"] for r in rows]
    assert [m.value for m in val] == pytest.approx([r["val_nelbo_nats"] for r in rows])
    logged_steps = [m.step for m in client.get_metric_history(tracked.info.run_id, "train/loss_nats_per_image")]
    assert sorted(logged_steps) == list(range(1, rows[-1]["step"] + 1))  # every optimiser step, once
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    test = client.get_metric_history(tracked.info.run_id, "test/nelbo_nats_per_image")
    assert [m.value for m in test] == pytest.approx([summary["test_nelbo_nats"]])
    listed = {f.path for f in client.list_artifacts(tracked.info.run_id, "pictures")}
    assert listed == {"pictures/recon_epoch003.png", "pictures/samples_epoch003.png"}  # the last epoch's
    folder = {f.path for f in client.list_artifacts(tracked.info.run_id, "run/checkpoints")}
    assert "run/checkpoints/best.safetensors" in folder


def test_wandb_offline_files_hold_the_run_and_a_resume_keeps_its_id(tmp_path: Path, offline_wandb: Path) -> None:
    settings = {"epochs": 3, "latent_dim": 2, "hidden_sizes": (16,), "batch_size": 48, "track": ("wandb:vk-test",)}
    with pytest.raises(KeyboardInterrupt):
        fit(images(), out=tmp_path / "run", callbacks=[StopAfter(2)], **settings)
    resume(tmp_path / "run")
    state = json.loads((tmp_path / "run" / "tracking.json").read_text())["wandb"]
    files = sorted(offline_wandb.glob(f"offline-run-*-{state['id']}/run-{state['id']}.wandb"))
    assert state["project"] == "vk-test" and len(files) == 2  # the first part and the resumed one: one id
    first, second = (history(path) for path in files)
    rows = metrics_of(tmp_path / "run")
    logged = first["val/nelbo_nats_per_image"] + second["val/nelbo_nats_per_image"]
    assert [step for step, _ in logged] == [r["step"] for r in rows]
    assert [value for _, value in logged] == pytest.approx([r["val_nelbo_nats"] for r in rows])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert second["test/nelbo_nats_per_image"][0][1] == pytest.approx(summary["test_nelbo_nats"])
    assert {"pictures/samples/path", "pictures/recon/path"} <= set(second)
    config = {item.key: json.loads(item.value_json) for c in of_kind(files[0], "config") for item in c.update}
    assert config["train.epochs"] == 3 and config["model.latent_dim"] == 2
    assert [a.name for a in of_kind(files[1], "artifact")] == [f"run-{state['id']}"]
    assert [e.exit_code for e in of_kind(files[0], "exit")] == [130]  # Ctrl-C
    assert [e.exit_code for e in of_kind(files[1], "exit")] == [0]


@pytest.mark.parametrize(
    ("track", "env", "message"),
    [
        ("neptune", {}, "unknown tracker 'neptune'; use mlflow[:TRACKING_URI] or wandb[:PROJECT]"),
        ("mlflow:http://127.0.0.1:9", {}, "the tracking store http://127.0.0.1:9 cannot be used"),
        ("wandb", {"WANDB_MODE": "online", "WANDB_API_KEY": ""}, "not logged in to W&B"),
        ("mlflow,mlflow", {}, "--track names mlflow twice"),
    ],
)
def test_a_tracker_that_cannot_start_stops_before_the_run_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    track: str,
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    np.savez(tmp_path / "blobs.npz", x=images()[:, 0])
    args = ["train", "--dataset", str(tmp_path / "blobs.npz"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*args, "--track", track, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_missing_tracker_package_is_named_with_its_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # as if it were not installed
    np.savez(tmp_path / "blobs.npz", x=images()[:, 0])
    args = ["train", "--dataset", str(tmp_path / "blobs.npz"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*args, "--track", "mlflow", "--quiet"]) == 2
    assert "needs the mlflow package: pip install mlflow-skinny" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
