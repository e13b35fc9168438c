"""Distributed training: 2 gloo processes on loopback started by torchrun compute what one process
computes with the same global batch, only rank 0 writes, and a killed 2-process run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from tests.test_resume import final_weights, wait_for_mid_epoch_snapshot
from vaekit.errors import VaekitError
from vaekit.training.distributed import Cluster, cluster_from_env, shard, shard_rows

# 31 does not divide the 1,900 training images: the last global batch splits unevenly (9 + 10).
FLAGS = ["--hidden-sizes", "64", "--latent-dim", "4", "--epochs", "3", "--batch-size", "31", "--val-size", "100"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("count", [1, 7, 31, 128])
def test_shards_cover_a_batch_exactly_once(count: int, world_size: int) -> None:
    batch = torch.arange(count)
    pieces = [shard(batch, Cluster(rank, world_size)) for rank in range(world_size)]
    assert torch.equal(torch.cat(pieces), batch)  # in order: no image twice, none dropped
    sizes = [len(piece) for piece in pieces]
    assert max(sizes) - min(sizes) <= 1
    assert shard_rows(count, Cluster(0, 1)) == slice(0, count)


def test_cluster_comes_from_the_torchrun_environment() -> None:
    assert cluster_from_env({}) == Cluster(0, 1, 0)
    assert cluster_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Cluster(3, 4, 1)
    with pytest.raises(VaekitError, match="WORLD_SIZE=2 do not fit"):
        cluster_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(VaekitError, match="not an integer"):
        cluster_from_env({"RANK": "zero", "WORLD_SIZE": "2"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(2200, side=12, seed=3)
    path = tmp_path_factory.mktemp("ddp") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train_command(dataset: Path, out: Path, processes: int, *extra: str) -> list[str]:
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    return [*launcher, "-m", "vaekit", "train", "--dataset", str(dataset), *FLAGS, "--out", str(out), *extra]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# Failures of the launcher's loopback rendezvous (a port taken between torchrun choosing it and
# binding it), not of vaekit: worth one more try in a fresh folder.
RENDEZVOUS_TROUBLE = (
    "RendezvousConnectionError",
    "RendezvousTimeoutError",
    "Address already in use",
    "DistNetworkError",
)


def train_two_ranks(dataset: Path, folder: Path, *extra: str) -> tuple[Path, str]:
    for attempt in range(2):
        out = folder / f"try{attempt}"
        result = run(train_command(dataset, out, 2, "--quiet", *extra))
        if result.returncode == 0 or not any(sign in result.stderr for sign in RENDEZVOUS_TROUBLE):
            break
    assert result.returncode == 0, result.stderr
    return out, result.stdout + result.stderr


def assert_two_ranks_follow_one(dataset: Path, tmp_path: Path, *flags: str) -> None:
    """2 processes with `flags` give the one process's training loss and KL, epoch by epoch."""
    double, _ = train_two_ranks(dataset, tmp_path / "two", *flags)
    result = run(train_command(dataset, tmp_path / "one", 1, "--quiet", *flags))
    assert result.returncode == 0, result.stderr
    for a, b in zip(metrics(tmp_path / "one"), metrics(double), strict=True):
        assert b["train_loss_nats"] == pytest.approx(a["train_loss_nats"], rel=1e-4)
        assert b["train_kl_nats"] == pytest.approx(a["train_kl_nats"], rel=1e-3)


@pytest.fixture(scope="module")
def two_ranks(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return train_two_ranks(dataset, tmp_path_factory.mktemp("two"), "--checkpoint-every", "10")


@pytest.mark.slow
def test_two_ranks_follow_the_one_process_loss_curve(
    dataset: Path, two_ranks: tuple[Path, str], tmp_path: Path
) -> None:
    one = tmp_path / "one"
    result = run(train_command(dataset, one, 1, "--quiet"))
    assert result.returncode == 0, result.stderr
    single, double = metrics(one), metrics(two_ranks[0])
    assert [line["step"] for line in double] == [line["step"] for line in single]  # same global batches
    for a, b in zip(single, double, strict=True):
        # Same data, order and noise: only the order of floating-point sums differs.
        assert b["train_loss_nats"] == pytest.approx(a["train_loss_nats"], rel=1e-4)
        assert b["train_kl_nats"] == pytest.approx(a["train_kl_nats"], rel=1e-3)
        # Validation is split between the ranks, each with its own noise: Monte Carlo error only.
        assert b["val_nelbo_nats"] == pytest.approx(a["val_nelbo_nats"], rel=0.02)
        assert b["val_images"] == a["val_images"] == 100


@pytest.mark.slow
def test_free_bits_look_at_the_whole_global_batch(dataset: Path, tmp_path: Path) -> None:
    """Which latent dimensions sit below the free-bits floor is decided on the KL averaged over
    the global batch, not each rank's share, so 2 processes still compute what 1 does."""
    assert_two_ranks_follow_one(dataset, tmp_path, "--free-bits", "0.7", "--epochs", "2")


@pytest.mark.slow
def test_two_ranks_give_each_image_its_label(dataset: Path, tmp_path: Path) -> None:
    """A conditional model on 2 ranks: each rank takes the labels of its own rows of the global
    batch, so the loss curve is the one process's (a label off by a row would change it)."""
    flags = ("--conditional", "--epochs", "1")
    double, _ = train_two_ranks(dataset, tmp_path / "two", *flags)
    result = run(train_command(dataset, tmp_path / "one", 1, "--quiet", *flags))
    assert result.returncode == 0, result.stderr
    for a, b in zip(metrics(tmp_path / "one"), metrics(double), strict=True):
        assert b["train_loss_nats"] == pytest.approx(a["train_loss_nats"], rel=1e-4)
        assert b["val_nelbo_nats"] == pytest.approx(a["val_nelbo_nats"], rel=0.02)


@pytest.mark.slow
def test_only_rank_zero_writes_and_reports(two_ranks: tuple[Path, str]) -> None:
    out, output = two_ranks
    assert len(metrics(out)) == 3  # one line per epoch: a second writer would append its own
    assert json.loads((out / "config.json").read_text())["processes"] == 2
    assert output.count("test -ELBO") == 1
    assert "[rank 1]" not in output and "Traceback" not in output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
        "resume.safetensors",
    ]


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_to_the_same_weights(
    dataset: Path, two_ranks: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = train_command(dataset, out, 2, "--quiet", "--checkpoint-every", "10")
    # A session of its own, so the whole torchrun tree (agent and both workers) can be killed.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True
    )
    info = wait_for_mid_epoch_snapshot(out, process, min_step=30)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists()
    result = run([*TORCHRUN, "-m", "vaekit", "train", "--resume", str(out), "--quiet"])
    assert result.returncode == 0, result.stderr
    expected, got = final_weights(two_ranks[0]), final_weights(out)
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming at step {info['step']}"
    assert [m["train_loss_nats"] for m in metrics(out)] == [m["train_loss_nats"] for m in metrics(two_ranks[0])]


@pytest.mark.slow
def test_an_existing_run_folder_stops_every_rank_with_one_message(dataset: Path, two_ranks: tuple[Path, str]) -> None:
    out = two_ranks[0]
    before = (out / "metrics.jsonl").read_text()
    result = run(train_command(dataset, out, 2))
    assert result.returncode != 0
    # One line from vaekit (rank 1 leaves the report to rank 0); torchrun then adds its own summary.
    assert result.stderr.count("vaekit: error:") == 1
    assert "already exists and is not empty" in result.stderr
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("objective", "term", "tolerance"),
    [
        ("betatc", "train_tc_nats", 1e-4),  # DIP's covariance and InfoVAE's MMD gather the same way
        # The discriminator's steps agree to float32 rounding (its weights to 1e-7 after a step), but
        # its gradients start near zero, where Adam's normalised steps amplify rounding: over an
        # epoch the curves agree to 0.1%, its own figure to a few percent.
        ("factorvae", "train_discriminator_nats", 2e-3),
    ],
)
def test_an_objective_of_the_whole_batch_follows_the_one_process_curve(
    objective: str, term: str, tolerance: float, dataset: Path, tmp_path: Path
) -> None:
    """β-TCVAE's q(z), DIP's covariance and FactorVAE's permuted batch are taken over the global
    batch, gathered from both ranks with its gradient, so 2 processes compute what 1 does."""
    flags = ("--objective", objective, "--epochs", "1")
    double, _ = train_two_ranks(dataset, tmp_path / "two", *flags)
    result = run(train_command(dataset, tmp_path / "one", 1, "--quiet", *flags))
    assert result.returncode == 0, result.stderr
    for a, b in zip(metrics(tmp_path / "one"), metrics(double), strict=True):
        assert b["train_loss_nats"] == pytest.approx(a["train_loss_nats"], rel=tolerance)
        assert b[term] == pytest.approx(a[term], rel=10 * tolerance, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("posterior", ["iaf", "vmf", "vq"])
def test_a_posterior_family_trains_on_two_ranks_as_on_one(posterior: str, dataset: Path, tmp_path: Path) -> None:
    """A flow's weights are synchronised like the encoder's, a vMF draw is a function of its
    share of the global batch's noise, and a codebook moves by the whole global batch's
    assignments (restarts drawn from it in a shared order): 2 processes follow one."""
    pytest.importorskip("scipy.special")
    extra = ("--codebook-size", "32", "--code-dim", "2") if posterior == "vq" else ()
    assert_two_ranks_follow_one(dataset, tmp_path, "--posterior", posterior, "--epochs", "1", *extra)


@pytest.mark.slow
def test_two_ranks_make_one_tracked_run(dataset: Path, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the experiment made first with its artifacts here: MLflow's default is ./mlruns in the working folder
    mlflow.MlflowClient(tracking_uri=store).create_experiment("vaekit", artifact_location=str(tmp_path / "artifacts"))
    out, _ = train_two_ranks(dataset, tmp_path / "two", "--epochs", "2", "--track", f"mlflow:{store}")
    client = mlflow.MlflowClient(tracking_uri=store)
    (tracked,) = client.search_runs([client.get_experiment_by_name("vaekit").experiment_id])  # rank 0's only
    assert tracked.info.status == "FINISHED" and tracked.data.params["train.epochs"] == "2"
    val = client.get_metric_history(tracked.info.run_id, "val/nelbo_nats_per_image")
    assert [m.value for m in val] == pytest.approx([line["val_nelbo_nats"] for line in metrics(out)])
