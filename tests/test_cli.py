"""The `vaekit` command, run as a user runs it: a subprocess, its output and exit code."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FASHION_DIR, needs_fashion


def vaekit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAEKIT_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def assert_user_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error:"), result.stderr
    assert fragment in lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    from tests.conftest import blob_images

    root = tmp_path_factory.mktemp("cli")
    images, labels = blob_images(200)
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    out = root / "run"
    # A relative dataset path, trained from its own folder; later commands run from elsewhere.
    flags = [
        "--preset",
        "mlp",
        "--hidden-sizes",
        "32",
        "--latent-dim",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--quiet",
    ]
    result = vaekit("train", "--dataset", "blobs.npz", *flags, "--out", str(out), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "test -ELBO" in result.stdout and "nats/image" in result.stdout
    (out / "train-output.txt").write_text(result.stdout + result.stderr)
    return out


def test_a_bernoulli_on_grey_pixels_is_called_a_cross_entropy_everywhere(trained_run: Path) -> None:
    """Never a likelihood, never bits/dim: in training's output, evaluate's table and eval.json."""
    trained = (trained_run / "train-output.txt").read_text()
    assert "is a cross-entropy, not a likelihood" in trained and "--binarize" in trained  # the note, once
    assert "[cross-entropy]" in trained and "no bits/dim" in trained and not re.search(r"\d bits/dim", trained)
    result = vaekit("evaluate", "--run", str(trained_run), "--k", "5", "--no-quality", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "cross-entropy on grey pixels" in result.stdout and "log p(x)" not in result.stdout
    assert re.search(r"bits/dim\s+none", result.stdout) and not re.search(r"bits/dim\s+\d", result.stdout)
    evaluation = json.loads((trained_run / "eval.json").read_text())
    assert evaluation["figure"] == "cross-entropy"
    assert evaluation["iwae_cross_entropy_nats"] <= evaluation["elbo_cross_entropy_nats"] + 1.0
    assert not [key for key in evaluation if "bits_per_dim" in key or "nll" in key or "nelbo" in key]
    summary = json.loads((trained_run / "summary.json").read_text())
    assert "test_bits_per_dim" not in summary and summary["test_figure"] == "cross-entropy"


def test_train_writes_the_resolved_config(trained_run: Path) -> None:
    config = json.loads((trained_run / "config.json").read_text())
    assert config["preset"] == "mlp" and config["model"]["hidden_sizes"] == [32]
    assert config["train"]["epochs"] == 2 and config["image_shape"] == [1, 28, 28]
    assert Path(config["data"]["dataset"]).is_absolute()


def test_sample_and_reconstruct(trained_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    result = vaekit("sample", "--run", str(trained_run), "-n", "16", "--out", str(tmp_path / "s.png"))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "s.png").size == (2 * (4 * 30 + 2),) * 2
    result = vaekit("reconstruct", "--run", str(trained_run), "-n", "8", "--out", str(tmp_path / "r.png"))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "r.png").size == (2 * (8 * 30 + 2), 2 * (2 * 30 + 2))
    again = vaekit("sample", "--run", str(trained_run), "--out", str(tmp_path / "s.png"))
    assert_user_error(again, "already exists")
    drawn = vaekit("sample", "--run", str(trained_run), "-n", "16", "--draw", "--out", str(tmp_path / "d.png"))
    assert drawn.returncode == 0, drawn.stderr
    assert "drawn from p(x|z)" in drawn.stdout
    import numpy as np

    # A Bernoulli model's draws are binary images (the white gaps between them are 255 too).
    assert set(np.unique(np.asarray(Image.open(tmp_path / "d.png"))).tolist()) == {0, 255}


def test_existing_run_folder_needs_force(trained_run: Path) -> None:
    before = sorted(p.name for p in trained_run.rglob("*"))
    result = vaekit("train", "--dataset", "nowhere.npz", "--out", str(trained_run))
    assert_user_error(result, "--force")
    assert sorted(p.name for p in trained_run.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--latent-dim", "-1"], "--latent-dim -1 must be 0 or more"),
        (["train", "--epochs", "-3"], "--epochs -3 must be at least 1"),
        (["train", "--epochs", "three"], "invalid int value"),
        (["train", "--activation", "swish"], "invalid choice"),
        (["train", "--config", "missing.toml"], "config file missing.toml does not exist"),
        (["sample", "--run", "no-such-run", "--out", "x.png"], "run no-such-run does not exist"),
        (["sample", "--run", "r", "-n", "0", "--out", "x.png"], "-n 0 is out of range"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = vaekit(*args, "--out", str(tmp_path / "out")) if args[0] == "train" else vaekit(*args, cwd=tmp_path)
    assert_user_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_missing_builtin_dataset_explains_where_to_put_it(tmp_path: Path) -> None:
    result = vaekit("train", "--dataset", "mnist", "--out", str(tmp_path / "out"))
    assert_user_error(result, "mnist files not found")
    assert "train-images-idx3-ubyte.gz" in result.stderr
    assert not (tmp_path / "out").exists()


def test_presets_and_datasets_listings() -> None:
    presets = vaekit("presets")
    assert presets.returncode == 0
    for name in ("mlp", "mlp-fast", "conv-small", "conv-fashion", "conv-32px"):
        assert f"\n{name}\n" in f"\n{presets.stdout}"
    as_json = json.loads(vaekit("presets", "--json").stdout)
    assert as_json["conv-fashion"]["train"]["epochs"] == 30
    datasets = vaekit("datasets")
    assert datasets.returncode == 0 and "mnist" in datasets.stdout and "fashion-mnist" in datasets.stdout


@needs_fashion
def test_datasets_finds_the_debian_package() -> None:
    assert f"found in {FASHION_DIR}" in vaekit("datasets").stdout


@pytest.mark.slow
def test_binarized_mnist_preset_runs_on_mnist_files_in_a_data_dir(tmp_path: Path) -> None:
    """MNIST cannot be downloaded here: four small IDX files named like MNIST's stand in for it."""
    from tests.conftest import write_idx_dataset

    write_idx_dataset(tmp_path / "data" / "mnist", n_train=300, n_test=60)
    out = tmp_path / "run"
    common = ["--data-dir", str(tmp_path / "data"), "--val-size", "50", "--epochs", "2", "--batch-size", "50"]
    result = vaekit("train", "--preset", "binarized-mnist", *common, "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["dataset"] == "mnist" and config["data"]["binarize"] is True
    assert config["model"]["hidden_sizes"] == [200, 200] and config["model"]["latent_dim"] == 50
    result = vaekit("evaluate", "--run", str(out), "--k", "20", "--no-quality", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "-log p(x), IWAE K=20" in result.stdout and "cross-entropy" not in result.stdout
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["figure"] == "likelihood"  # binarised pixels: a Bernoulli is their likelihood
    assert evaluation["iwae_nll_nats"] <= evaluation["elbo_nelbo_nats"] + 1.0
    assert evaluation["iwae_bits_per_dim"] == pytest.approx(evaluation["iwae_nll_nats"] / (784 * math.log(2)))
