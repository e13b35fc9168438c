"""Classes of bad input that used to end in a traceback or, worse, a figure: each refused or
handled where it lives, one test per class (the CLI in-process: exit code 2, one line, nothing
left behind)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.metrics.disentanglement import Representation, dci, sap

TINY = ["--hidden-sizes", "16", "--latent-dim", "2", "--quiet"]


@pytest.fixture
def blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    images, labels = blob_images(120, side=8, seed=1)  # 96 training items once 12 + 12 are held out
    np.savez(tmp_path / "blobs.npz", x=images[:, 0], y=labels)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("vaekit:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vaekit: error: ") and fragment in lines[0], err


@pytest.mark.parametrize(
    "flags",
    [
        ["--hidden-sizes", "100000000"],
        ["--latent-dim", "1000000000"],
        ["--objective", "iwae", "--iwae-samples", "1000000000"],
        ["--objective", "factorvae", "--discriminator-hidden", "65536", "--discriminator-layers", "64"],
        ["--posterior", "vq", "--codebook-size", "1000000", "--code-dim", "60000"],
    ],
    ids=["width", "latent", "draws", "discriminator", "codebook"],
)
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(
    flags: list[str], blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--dataset", "blobs.npz", *TINY[:-1], "--batch-size", "16", *flags, "--out", "run"])
    one_line_error(capsys, code, "this run needs about")
    assert not (blobs / "run").exists()


def test_a_last_batch_too_small_for_the_objective_is_left_out(blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 96 training items in batches of 19: a last batch of 1, and β-TCVAE's estimate needs 2
    code = main(["train", "--dataset", "blobs.npz", *TINY, "--objective", "betatc", "--batch-size", "19"])
    assert code == 0
    assert "each epoch's last batch (1 of the 96 training items) is left out" in capsys.readouterr().err


def test_a_run_whose_every_step_fails_is_an_error_and_leaves_no_folder(
    blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--likelihood", "gaussian", "--sigma", "1e-300", "--batch-size", "16", "--epochs", "2"]
    code = main(["train", "--dataset", "blobs.npz", *TINY, *flags, "--out", "run"])
    one_line_error(capsys, code, "every step of epoch 1 had a non-finite loss or gradient")
    assert not (blobs / "run").exists()  # nothing to resume: the same command, fixed, runs again
    assert main(["train", "--dataset", "blobs.npz", *TINY, "--batch-size", "16", "--out", "run"]) == 0


@pytest.fixture
def finished(blobs: Path) -> Path:
    assert main(["train", "--dataset", "blobs.npz", *TINY, "--batch-size", "16", "--epochs", "1", "--out", "run"]) == 0
    return blobs / "run"


def test_damaged_files_of_a_run_are_one_line(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", "run", "--k", "2", "--no-quality"]) == 0
    capsys.readouterr()
    (finished / "summary.json").write_text("{not json")
    one_line_error(capsys, main(["report", "--run", "run"]), "run/summary.json is damaged: not valid JSON")
    metrics = finished / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"epoch": 2, "cut sh')  # a line cut short by a killed process: left out
    assert main(["plot", "--run", "run", "curves", "--out", "plots"]) == 0
    metrics.write_text('{"epoch": 1, "cut sh\n' + good)
    one_line_error(capsys, main(["plot", "--run", "run", "curves", "--out", "plots"]), "line 1 is not valid JSON")


def test_weights_that_are_not_finite_are_one_line_never_a_figure(
    finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = finished / "checkpoints" / "best.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(path), metadata=metadata)
    capsys.readouterr()
    one_line_error(capsys, main(["evaluate", "--run", "run", "--k", "2", "--no-quality"]), "non-finite values in")
    assert not (finished / "eval.json").exists()
    shutil.rmtree(finished)


def test_a_factor_with_a_single_value_is_left_out_of_the_metrics_not_a_crash() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(400, 3))
    factors = np.stack([rng.integers(0, 3, 400), np.zeros(400, dtype=np.int64)], 1)  # the second never varies
    rep = Representation(codes, factors)
    separated, informed = sap(rep, np.random.default_rng(0)), dci(rep, np.random.default_rng(0))
    assert separated["constant_factors"] == informed["constant_factors"] == [1]
    assert np.all(np.asarray(separated["score_matrix"])[:, 1] == 0)
    assert np.all(np.asarray(informed["importance_matrix"])[:, 1] == 0)
    assert 0 <= separated["sap"] <= 1 and 0 <= informed["disentanglement"] <= 1
    with pytest.raises(VaekitError, match="every factor takes a single value"):
        sap(Representation(codes, factors[:, 1:]), np.random.default_rng(0))
