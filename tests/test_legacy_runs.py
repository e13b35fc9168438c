"""Run folders saved before the methods became plug-ins (tests/fixtures/legacy_runs, written by
make_fixtures.py with the vaekit of that time) still load, evaluate, sample, encode and serve, and
a run killed after a mid-epoch snapshot then resumes to the very weights it reached then."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaekit.cli import main
from vaekit.loading import load_run
from vaekit.serve.explorer import LatentExplorer

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"
# each run: the objective and the posterior family with the settings it was trained with
RUNS = {
    "gaussian": ({"name": "elbo"}, {"name": "gaussian"}),
    "betatc": ({"name": "betatc", "alpha": 1.0, "beta": 3.0, "gamma": 1.0, "estimator": "mss"}, {"name": "gaussian"}),
    "factorvae": (
        {
            "name": "factorvae",
            "gamma": 40.0,
            "discriminator_lr": 1e-4,
            "discriminator_hidden": 8,
            "discriminator_layers": 2,
        },
        {"name": "gaussian"},
    ),
    "iaf": ({"name": "elbo"}, {"name": "iaf", "steps": 1, "hidden": 8, "context": 4}),
    "vmf": ({"name": "elbo"}, {"name": "vmf"}),
    "ladder-pixel": ({"name": "elbo"}, {"name": "gaussian"}),
    "vamp": ({"name": "elbo"}, {"name": "gaussian"}),
    "conditional": ({"name": "elbo"}, {"name": "gaussian"}),
    "vq": (
        {"name": "elbo"},
        {
            "name": "vq",
            "codebook_size": 8,
            "code_dim": 2,
            "codebook_update": "ema",
            "ema_decay": 0.99,
            "commitment": 0.25,
            "code_prior_layers": 1,
            "code_prior_channels": 4,
        },
    ),
}


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the old run folders (their data path is relative to it), as the working directory."""
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder)
    monkeypatch.chdir(folder)
    return folder


def test_every_old_run_is_a_fixture() -> None:
    assert sorted(RUNS) == sorted(
        path.name for path in LEGACY.iterdir() if (path / "checkpoints" / "best.safetensors").is_file()
    )


@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_old_run_loads_evaluates_samples_encodes_and_serves(name: str, legacy: Path) -> None:
    run = load_run(name)
    objective, posterior = RUNS[name]
    assert (run.config.objective.to_dict(), run.config.posterior.to_dict()) == (objective, posterior)
    assert main(["evaluate", "--run", name, "--k", "4", "--no-quality"]) == 0
    label = ["--label", "1"] if name == "conditional" else []
    assert main(["sample", "--run", name, "-n", "4", *label, "--out", f"{name}-samples.png"]) == 0
    assert (legacy / f"{name}-samples.png").stat().st_size > 0
    assert main(["encode", "--run", name, "--out", f"{name}-codes.npz"]) == 0
    codes = np.load(legacy / f"{name}-codes.npz")
    assert all(np.isfinite(codes[key]).all() for key in codes.files if codes[key].dtype.kind == "f")
    explorer = LatentExplorer(run, run.load_data())  # what `vaekit serve` answers
    decoded = explorer.decode([0.5] * run.model.latent_dim, label=1 if name == "conditional" else None)
    assert decoded["image"].startswith("data:image/png")


def test_an_old_run_killed_mid_epoch_resumes_to_the_weights_it_reached_then(legacy: Path) -> None:
    assert main(["train", "--resume", "killed", "--quiet"]) == 0
    expected = load_file(str(LEGACY / "expected" / "killed-last.safetensors"))
    got = load_file(str(legacy / "killed" / "checkpoints" / "last.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
