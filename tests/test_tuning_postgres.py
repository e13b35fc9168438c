"""`vaekit tune` from several workers at once on one PostgreSQL storage (as from several machines
sharing a file system): no two run the same trial, and the trial of a worker killed mid-run is
resumed, exactly, by another once its heartbeats stop. The test starts a real PostgreSQL server
(Debian's `postgresql`, which .ci/run installs) and skips where its binaries are absent."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import blob_images
from tests.killing import vaekit_until_killed
from tests.test_studies import BASE
from vaekit.loading import load_run
from vaekit.training.run import train_run

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg2", reason="the PostgreSQL driver: pip install psycopg2-binary")

STUDY = BASE + '[search]\n"train.lr" = {low = 1e-3, high = 3e-2, log = true}\n[tune]\ntrials = 5\nprune = false\n'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary folder; its URL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("PostgreSQL's server binaries are absent (apt-get install postgresql)")
    bin_dir = found[-1].parent
    root = Path(tempfile.mkdtemp(prefix="vaekit-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: as the package's own user
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = lambda *args: subprocess.run([*as_postgres, *map(str, args)], check=True, capture_output=True)  # noqa: E731
    run(bin_dir / "initdb", "-D", root / "data", "-A", "trust", "-U", "vaekit")
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    run(bin_dir / "pg_ctl", "-D", root / "data", "-o", options, "-l", root / "log", "-w", "start")
    try:
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "vaekit", "studies")
        yield f"postgresql+psycopg2://vaekit@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_workers_share_a_postgres_study_and_resume_a_killed_ones_trial(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = blob_images(240, side=8, seed=3)
    np.savez(tmp_path / "blobs.npz", x=images[:, 0], y=labels)
    (tmp_path / "search.toml").write_text(STUDY)
    monkeypatch.chdir(tmp_path)
    command = ["tune", "search.toml", "--out", "study", "--storage", postgres, "--heartbeat", "1", "--quiet"]
    workers = [
        subprocess.Popen([sys.executable, "-m", "vaekit", *command], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    vaekit_until_killed(command, tmp_path, step=5)  # a third worker, killed in its first trial
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read() if worker.stderr else ""
    study = optuna.load_study(study_name="vaekit", storage=postgres)
    trials = study.get_trials()
    states = optuna.trial.TrialState
    dead = [t for t in trials if t.state == states.FAIL]
    assert len(dead) == 1 and "error" not in dead[0].user_attrs  # the killed worker's, stale: not its own failure
    complete = [t for t in trials if t.state == states.COMPLETE]
    folders = [t.user_attrs["folder"] for t in complete]
    assert len(folders) == len(set(folders)) >= 5  # no trial run twice, the budget reached
    assert dead[0].user_attrs["folder"] in folders  # resumed by a live worker
    resumed = tmp_path / "study" / "runs" / dead[0].user_attrs["folder"]
    train_run(load_run(resumed).config, tmp_path / "uninterrupted", progress=False)
    expected = load_file(str(tmp_path / "uninterrupted" / "checkpoints" / "last.safetensors"))
    got = load_file(str(resumed / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(expected[key], got[key]) for key in expected)
