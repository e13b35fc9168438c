"""Each posterior family beyond the Gaussian through every command, as a user runs them: train,
evaluate, sample, encode, score, report, a killed run resumed to identical weights; and from
Python, on images and on a table."""

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
from vaekit.loading import load_run
from vaekit.serve.explorer import LatentExplorer

pytest.importorskip("scipy.special")

COMMON = ["--hidden-sizes", "64", "--latent-dim", "4", "--batch-size", "32", "--val-size", "100", "--quiet"]
FAMILIES = {
    "iaf": ["--posterior", "iaf", "--flow-hidden", "32", "--flow-context", "8"],
    "vmf": ["--posterior", "vmf"],
    "iaf-ladder": [
        "--posterior",
        "iaf",
        "--stochastic-layers",
        "2",
        "--top-latent-dim",
        "2",
        "--top-hidden-size",
        "32",
    ],
    "vq": ["--posterior", "vq", "--codebook-size", "16", "--code-dim", "2"],
    "vq-conv": ["--posterior", "vq", "--architecture", "conv", "--conv-channels", "8,16", "--codebook-size", "16"],
}
# What `vaekit encode` writes for each family, beside index and label.
CODE_ARRAYS = {
    "iaf": {"z_centre", "z_base_mean", "z_base_std"},
    "vmf": {"z_mean_direction", "z_concentration"},
    "iaf-ladder": {"z2_centre", "z1_mean", "z1_std"},
    "vq": {"z_codes"},
    "vq-conv": {"z_codes"},
}


def vaekit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ},
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(1500, side=12, seed=3)
    path = tmp_path_factory.mktemp("families") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["iaf", "vmf", "iaf-ladder", "vq-conv"])  # the MLP's codes: resume and fit below
def test_every_command_works_for_the_family(family: str, dataset: Path, tmp_path: Path) -> None:
    done = vaekit(
        "train", "--dataset", str(dataset), *COMMON, *FAMILIES[family], "--epochs", "2", "--out", "run", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["posterior"]["name"] == FAMILIES[family][1]
    evaluated = vaekit("evaluate", "--run", "run", "--k", "20", "--images", "100", "--no-quality", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    figures = json.loads((run / "eval-first100.json").read_text())
    # The IWAE bound with K = 20 is at least as tight as the ELBO (within Monte Carlo error).
    assert figures["iwae_cross_entropy_nats"] <= figures["elbo_cross_entropy_nats"] + 0.5
    if family.startswith("vq"):  # no prior over codes yet: sampling says how to train one, writes nothing
        refused = vaekit("sample", "--run", "run", "-n", "8", "--out", "s.png", cwd=tmp_path)
        assert refused.returncode == 2 and "vaekit train-prior" in refused.stderr and not (tmp_path / "s.png").exists()
        trained = vaekit("train-prior", "--run", "run", "--epochs", "2", cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr
        assert (run / "checkpoints" / "code_prior.safetensors").is_file()
        assert len((run / "prior_metrics.jsonl").read_text().splitlines()) == 2
    assert vaekit("sample", "--run", "run", "-n", "8", "--out", "s.png", cwd=tmp_path).returncode == 0
    encoded = vaekit("encode", "--run", "run", "--out", "codes.npz", cwd=tmp_path)
    assert encoded.returncode == 0, encoded.stderr
    codes = np.load(tmp_path / "codes.npz")
    assert set(codes.files) == {"index", "label", *CODE_ARRAYS[family]}
    assert all(np.isfinite(codes[name]).all() for name in codes.files)
    if family.startswith("vq"):
        assert codes["z_codes"].dtype == np.int64 and codes["z_codes"].min() >= 0 and codes["z_codes"].max() < 16
    scored = vaekit("score", "--run", "run", "--out", "scores.csv", "--k", "5", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert vaekit("report", "--run", "run", cwd=tmp_path).returncode == 0
    assert (run / "report.html").stat().st_size > 0
    explorer = LatentExplorer(trained := load_run(run), trained.load_data())  # what `vaekit serve` answers
    assert sorted(explorer.info()["order"]) == list(range(trained.model.latent_dim))
    assert explorer.decode([0.5] * trained.model.latent_dim)["image"].startswith("data:image/png")
    assert len(explorer.sample(2)["images"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("family", ["iaf", "vmf", "vq"])
def test_a_killed_family_run_resumes_to_identical_weights(family: str, dataset: Path, tmp_path: Path) -> None:
    flags = ["--dataset", str(dataset), *COMMON, *FAMILIES[family], "--batch-size", "8", "--epochs", "2"]
    flags += ["--checkpoint-every", "7"]
    reference = vaekit("train", *flags, "--out", "reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    command = [sys.executable, "-m", "vaekit", "train", *flags, "--out", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    info = wait_for_mid_epoch_snapshot(tmp_path / "run", process, min_step=20)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = vaekit("train", "--resume", "run", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "run")
    # the flow's weights and the codebook's moving averages travel with the snapshot
    assert any(name.startswith("family.") for name in expected) == (family in ("iaf", "vq"))
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming at step {info['step']}"


@pytest.mark.slow
@pytest.mark.parametrize("posterior", ["iaf", "vmf", "vq"])
def test_fit_from_python_on_images_and_on_a_table(posterior: str, tmp_path: Path) -> None:
    import vaekit

    sklearn = pytest.importorskip("sklearn.datasets")
    images, labels = blob_images(600, side=12, seed=5)
    extra = {"prior_epochs": 1, "code_dim": 2} if posterior == "vq" else {}
    run = vaekit.fit(images, labels, out=tmp_path / "images", epochs=1, latent_dim=3, posterior=posterior, **extra)
    codes = run.encode(images[:10])
    assert codes.mean.shape == (10, 3)
    assert run.model.sample(4).shape == (4, 1, 12, 12)
    table = sklearn.load_breast_cancer().data.astype(np.float32)
    run = vaekit.fit(table, out=tmp_path / "table", epochs=2, latent_dim=3, posterior=posterior, **extra)
    assert run.encode(table[:5]).mean.shape == (5, 3)
    summary = json.loads((tmp_path / "table" / "summary.json").read_text())
    assert np.isfinite(summary["test_nelbo_nats"])
