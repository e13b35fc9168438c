"""`vaekit tune` (vaekit/studies/tuning.py): a search on Optuna whose trials are run folders,
checked before any trial starts, and resumed exactly after a SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.killing import vaekit_until_killed
from tests.test_studies import BASE, blob_folder
from vaekit.cli import main
from vaekit.loading import load_run
from vaekit.studies.tuning import kept_value
from vaekit.training.run import train_run

pytest.importorskip("optuna")

SEARCH = '[search]\n"train.lr" = {low = 1e-3, high = 3e-2, log = true}\n"train.beta" = [0.5, 1.0]\n'


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return blob_folder(tmp_path, monkeypatch)


def search_file(folder: Path, search: str = SEARCH, tune: str = "[tune]\ntrials = 3\nprune = false\n") -> Path:
    path = folder / "search.toml"
    path.write_text(BASE + search + tune)
    return path


@pytest.mark.parametrize(
    ("search", "tune", "message"),
    [
        ("", "", "has no [search]"),
        (
            '[search]\n"train.lr" = {low = 0.1, high = 0.01}\n',
            "",
            "low 0.1 and high 0.01: give numbers with low < high",
        ),
        ('[search]\n"train.lr" = {low = 0.0, high = 0.1, log = true}\n', "", "log scale and needs low > 0"),
        ('[search]\n"train.lr" = [0.1, 0.1]\n', "", "must list distinct choices"),
        ('[search]\n"objective.tc_beta" = [2.0, 4.0]\n', "", "--tc-beta is a setting of --objective betatc"),
        ('[search]\n"train.lr" = {low = 1e-3, high = 2.0}\n', "", ""),  # placeholder replaced below
        (SEARCH, "[tune]\ntrails = 3\n", "unknown [tune] key(s) ['trails']"),
        (SEARCH, '[tune]\nmetric = "val_fid"\n', "metric 'val_fid' is not known"),
    ],
)
def test_a_bad_search_is_one_line_and_writes_nothing(
    folder: Path, capsys: pytest.CaptureFixture[str], search: str, tune: str, message: str
) -> None:
    if not message:  # a range reaching past what the setting allows: checked at its ends
        search, message = '[search]\n"train.warmup_steps" = {low = -5, high = 10}\n', "--warmup-steps -5 must be >= 0"
    assert main(["tune", str(search_file(folder, search, tune)), "--out", "study"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (folder / "study").exists()


def test_a_storage_that_cannot_be_used_is_refused_before_anything_is_written(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = "sqlite:////nonexistent-folder/optuna.db"
    assert main(["tune", str(search_file(folder)), "--out", "study", "--storage", storage]) == 2
    assert "cannot be used" in capsys.readouterr().err and not (folder / "study").exists()


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.slow
def test_a_killed_trial_resumes_exactly_and_the_best_is_the_best(folder: Path) -> None:
    path = search_file(folder)
    # killed right after a mid-epoch snapshot of the second trial
    vaekit_until_killed(["tune", str(path), "--out", "study", "--quiet"], folder, step=5, where="trial-0001")
    assert main(["tune", str(path), "--out", "study", "--quiet"]) == 0
    index = json.loads((folder / "study" / "tune.json").read_text())
    trials = index["trials"]
    interrupted = [t for t in trials if t.get("interrupted")]
    assert [t["folder"] for t in interrupted] == ["trial-0001"]  # recorded, not counted
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(complete) == 3 and sorted(t["folder"] for t in complete).count("trial-0001") == 1
    # each value is the validation -ELBO at the kept epoch, read again here from the run's own files
    for trial in complete:
        run = folder / "study" / "runs" / trial["folder"]
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        best = json.loads((run / "summary.json").read_text())["best_epoch"]
        assert trial["value"] == pytest.approx(next(x["val_nelbo_nats"] for x in lines if x["epoch"] == best))
        assert kept_value(run, "val_nelbo_nats") == trial["value"]
    assert index["best"]["value"] == min(t["value"] for t in complete)
    # the resumed trial ends with the weights of the same run never interrupted
    resumed = folder / "study" / "runs" / "trial-0001"
    train_run(load_run(resumed).config, folder / "uninterrupted", progress=False)
    expected, got = weights(folder / "uninterrupted"), weights(resumed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_trial_whose_folder_another_worker_holds_is_left_to_it(folder: Path) -> None:
    import fcntl

    path = search_file(folder, tune="[tune]\ntrials = 1\nprune = false\n")
    assert main(["tune", str(path), "--out", "study", "--quiet"]) == 0
    with open(folder / "study" / "runs" / "trial-0001.lock", "a") as held:  # as a live worker would
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["tune", str(path), "--out", "study", "--quiet", "--trials", "2"]) == 0
    trials = json.loads((folder / "study" / "tune.json").read_text())["trials"]
    assert trials[1]["state"] == "FAIL" and "is being trained by another worker" in trials[1]["error"]
    assert not (folder / "study" / "runs" / "trial-0001").exists()  # nothing of it was touched
