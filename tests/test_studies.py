"""Studies (vaekit/studies/): a study file read and checked before anything runs, `vaekit sweep`
training its grid as ordinary run folders, with workers, and ending after a SIGKILL and a restart
as a study never interrupted does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import blob_images
from tests.killing import vaekit_until_killed
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.studies import compare, read_study
from vaekit.studies.sweeps import prepare_folder
from vaekit.studies.sweeps import status as sweep_status

BASE = """
preset = "mlp"
[data]
dataset = "blobs.npz"
val_size = 40
[model]
hidden_sizes = [16]
latent_dim = 2
[train]
epochs = 2
batch_size = 32
checkpoint_every = 3
"""


def blob_folder(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`path` with the studies' data (blobs.npz) in it, as the working directory."""
    images, labels = blob_images(240, side=8, seed=3)
    np.savez(path / "blobs.npz", x=images[:, 0], y=labels)
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return blob_folder(tmp_path, monkeypatch)


def study_file(folder: Path, grid: str, name: str = "study.toml", base: str = BASE) -> Path:
    path = folder / name
    path.write_text(base + ("[grid]\n" + grid if grid or "[[variants]]" not in base else ""))
    return path


def test_every_combination_is_a_run_named_by_its_values(folder: Path) -> None:
    study = read_study(study_file(folder, '"train.lr" = [0.001, 0.003]\n"train.seed" = [0, 1, 2]\n'))
    assert [run.name for run in study.runs][:4] == [
        "lr=0.001,seed=0",
        "lr=0.001,seed=1",
        "lr=0.001,seed=2",
        "lr=0.003,seed=0",
    ]
    assert len(study.runs) == 6 and {(r.config.train.lr, r.config.train.seed) for r in study.runs} == {
        (lr, seed) for lr in (0.001, 0.003) for seed in (0, 1, 2)
    }
    assert all(run.config.model.hidden_sizes == (16,) for run in study.runs)  # the base applies to each
    # a method's own settings vary by their names, the method too
    grid = '"objective.name" = ["betatc"]\n"objective.beta" = [2.0, 6.0]\n"train.beta" = [1.0]\n'
    names = [run.name for run in read_study(study_file(folder, grid)).runs]
    assert names == ["name=betatc,objective.beta=2,train.beta=1", "name=betatc,objective.beta=6,train.beta=1"]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("", "has no [grid] to vary"),
        ('"lr" = [0.1]\n', "grid key 'lr' is not section.setting"),
        ('"train.lr" = []\n', "must be a non-empty list"),
        ('"train.lr" = [0.1, 0.1]\n', "lists a value twice"),
        ('"train.lr" = [0.001, -1.0]\n', "run lr=-1: --lr -1.0 must be a positive number"),
        ('"objective.tc_beta" = [2.0]\n', "run tc_beta=2: --tc-beta is a setting of --objective betatc, not of elbo"),
        ('"model.latent_dimm" = [3]\n', "unknown setting model.latent_dimm"),
    ],
)
def test_a_bad_study_is_one_line_and_writes_nothing(
    folder: Path, capsys: pytest.CaptureFixture[str], grid: str, message: str
) -> None:
    path = study_file(folder, grid)
    assert main(["sweep", str(path), "--out", "study"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (folder / "study").exists()


def test_an_unknown_section_is_refused(folder: Path) -> None:
    with pytest.raises(VaekitError, match=r"unknown key\(s\) \['trian'\]"):
        read_study(study_file(folder, '"train.lr" = [0.1]\n', base=BASE + "[trian]\nepochs = 1\n"))
    with pytest.raises(VaekitError, match=r"study file nowhere\.toml does not exist"):
        read_study("nowhere.toml")
    search = folder / "search.toml"
    search.write_text(BASE + '[search]\n"train.lr" = [0.1, 0.2]\n')
    with pytest.raises(VaekitError, match="a search runs with vaekit tune"):
        read_study(search)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.slow
def test_a_study_killed_and_started_again_ends_as_one_never_interrupted(folder: Path) -> None:
    path = study_file(folder, '"train.seed" = [0, 1]\n')
    assert main(["sweep", str(path), "--out", "reference", "--quiet", "--workers", "2"]) == 0
    # killed right after a mid-epoch snapshot of the second run, the first one finished
    vaekit_until_killed(["sweep", str(path), "--out", "study", "--quiet"], folder, step=5, where="seed=1")
    status = [run.state for run in sweep_status(read_study(path), folder / "study").runs]
    assert status == ["done", "interrupted"]
    first = (folder / "study" / "runs" / "seed=0" / "summary.json").stat().st_mtime_ns
    metrics = folder / "study" / "runs" / "seed=1" / "metrics.jsonl"
    epoch_one = metrics.read_text().splitlines()[0]  # written before the kill, its timings with it
    assert main(["sweep", str(path), "--out", "study", "--quiet"]) == 0
    assert (folder / "study" / "runs" / "seed=0" / "summary.json").stat().st_mtime_ns == first  # kept, not rerun
    assert metrics.read_text().splitlines()[0] == epoch_one  # resumed, not redone
    for name in ("seed=0", "seed=1"):
        expected, got = weights(folder / "reference" / "runs" / name), weights(folder / "study" / "runs" / name)
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    index = json.loads((folder / "study" / "study.json").read_text())
    assert [run["state"] for run in index["runs"]] == ["done", "done"]
    assert index["runs"][1]["values"] == {"train.seed": 1} and index["runs"][1]["figures"]["test_nelbo_nats"] > 0
    assert load_run(folder / "study" / "runs" / "seed=1").config.train.seed == 1  # an ordinary run folder
    # a third sweep has nothing left to do, and another study is never run into this folder
    assert main(["sweep", str(path), "--out", "study", "--quiet"]) == 0
    other = study_file(folder, '"train.seed" = [5]\n', name="other.toml")
    assert main(["sweep", str(other), "--out", "study", "--quiet"]) == 2


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study: two learning rates times two seeds, one epoch each."""
    root = tmp_path_factory.mktemp("study")
    images, labels = blob_images(240, side=8, seed=3)
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    base = BASE.replace('dataset = "blobs.npz"', f'dataset = "{root / "blobs.npz"}"').replace(
        "epochs = 2", "epochs = 1"
    )
    path = study_file(root, '"train.lr" = [0.001, 0.01]\n"train.seed" = [0, 1]\n', base=base)
    assert main(["sweep", str(path), "--out", str(root / "study"), "--quiet", "--workers", "2"]) == 0
    return root / "study"


def test_runs_that_differ_only_by_seed_are_one_row_of_means(small_study: Path) -> None:
    table = compare([small_study])
    assert table.grouped and [row["train.lr"] for row in table.rows] == [0.001, 0.01]
    for row, lr in zip(table.rows, ("0.001", "0.01"), strict=True):
        summaries = [
            json.loads((small_study / "runs" / f"lr={lr},seed={s}" / "summary.json").read_text()) for s in (0, 1)
        ]
        values = [summary["test_nelbo_nats"] for summary in summaries]
        assert row["runs"] == 2 and row["test_nelbo_nats"] == pytest.approx(np.mean(values))
        assert row["test_nelbo_nats_std"] == pytest.approx(np.std(values, ddof=1))
    assert "train.seed" not in table.columns and "| train.lr | runs | figure | test_nelbo_nats" in table.to_markdown()


def test_compare_writes_its_table_and_plots_and_never_averages_figures_of_different_kinds(
    small_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(small_study), "--out", str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # rate-distortion, the strip plot, the curves
    header = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0].split(",")
    assert {"train.lr", "runs", "figure", "test_nelbo_nats", "test_nelbo_nats_std"} <= set(header)
    # one seed's figure of another kind (a cross-entropy beside a likelihood): its own row, labelled
    other = tmp_path / "other"
    shutil.copytree(small_study / "runs" / "lr=0.001,seed=1", other)
    summary = json.loads((other / "summary.json").read_text())
    kind = summary["test_figure"]  # the Bernoulli on grey blobs: a cross-entropy
    (other / "summary.json").write_text(json.dumps({**summary, "test_figure": "likelihood"}))
    mixed = compare([small_study / "runs" / "lr=0.001,seed=0", other])
    assert not mixed.grouped and [row["figure"] for row in mixed.rows] == [kind, "likelihood"]
    assert "| 0.001 |" in compare([small_study]).to_markdown()  # a setting as given, not rounded
    capsys.readouterr()
    assert main(["compare", str(tmp_path)]) == 2  # neither a run nor a study folder
    err = capsys.readouterr().err
    assert "is neither a finished run folder nor a study folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_its_run_to_another_who_resumes_it(folder: Path) -> None:
    path = study_file(folder, '"train.seed" = [0, 1, 2]\n')
    assert main(["sweep", str(path), "--out", "reference", "--quiet", "--workers", "2"]) == 0
    command = [sys.executable, "-m", "vaekit", "sweep", str(path), "--out", "study", "--quiet"]
    live = subprocess.Popen(command, cwd=folder)
    vaekit_until_killed(["sweep", str(path), "--out", "study", "--quiet"], folder, step=5)  # a second worker
    assert live.wait(timeout=300) == 0
    for name in ("seed=0", "seed=1", "seed=2"):
        expected, got = weights(folder / "reference" / "runs" / name), weights(folder / "study" / "runs" / name)
        assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_data_that_is_not_there_is_the_studys_bad_input_not_every_runs_failure(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = study_file(folder, '"train.seed" = [0, 1]\n', base=BASE.replace("blobs.npz", "nope.npz"))
    assert main(["sweep", str(path), "--out", "study"]) == 2
    assert "unknown dataset 'nope.npz'" in capsys.readouterr().err and not (folder / "study").exists()


def test_variants_are_crossed_with_the_grid(folder: Path) -> None:
    variants = (
        '[[variants]]\nname = "vae"\n'
        '[[variants]]\nname = "betatc"\n"objective.name" = "betatc"\n"objective.beta" = 6.0\n'
        '[[variants]]\n"train.beta" = 4.0\n'
    )
    study = read_study(study_file(folder, '"train.seed" = [0, 1]\n', base=BASE + variants))
    assert [run.name for run in study.runs] == [
        "vae,seed=0",
        "vae,seed=1",
        "betatc,seed=0",
        "betatc,seed=1",
        "beta=4,seed=0",
        "beta=4,seed=1",
    ]
    betatc = study.runs[2].config
    assert (betatc.objective.name, betatc.objective.settings.beta, betatc.train.seed) == ("betatc", 6.0, 0)
    assert study.runs[4].config.train.beta == 4.0 and study.runs[0].config.objective.name == "elbo"
    # variants alone need no grid; a setting both vary, or two variants of one name, are refused
    assert len(read_study(study_file(folder, "", base=BASE + variants)).runs) == 3
    with pytest.raises(VaekitError, match=r"\['train.beta'\] are set by a variant and by \[grid\]"):
        read_study(study_file(folder, '"train.beta" = [1.0]\n', base=BASE + variants))
    with pytest.raises(VaekitError, match="two \\[\\[variants\\]\\] share the name"):
        read_study(study_file(folder, "", base=BASE + '[[variants]]\nname = "a"\n[[variants]]\nname = "a"\n'))


def test_compare_shows_what_vaekit_evaluate_measured(small_study: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_study / "runs" / "lr=0.001,seed=0", run)
    assert main(["evaluate", "--run", str(run), "--k", "3", "--no-quality"]) == 0
    evaluation = json.loads((run / "eval.json").read_text())
    table = compare([run, small_study / "runs" / "lr=0.01,seed=0"])
    row = next(r for r in table.rows if r["run"] == "run")
    assert row["eval.active_units"] == evaluation["active_units"] and "eval.iwae_standard_error_nats" in table.columns
    assert "eval.seconds.elbo" not in table.columns  # how long it took is not a figure of the model


def test_an_interrupted_run_is_not_a_failed_one(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM stops the sweep for a later resume: the run is not marked failed."""
    from vaekit.studies import sweeps
    from vaekit.training.loop import TrainingInterrupted

    study = read_study(study_file(folder, '"train.seed" = [0]\n'))
    out = sweeps.prepare_folder(study, folder / "study")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise TrainingInterrupted("interrupted at step 3: a resumable snapshot was saved")

    monkeypatch.setattr(sweeps, "train_run", interrupted)
    with pytest.raises(TrainingInterrupted):
        sweeps.work(study, out)
    assert not (out / "runs" / "seed=0.failed.json").exists()


def test_a_study_with_evaluate_evaluates_each_run_once(folder: Path) -> None:
    path = study_file(folder, '"train.seed" = [0]\n', base=BASE + "[evaluate]\nk = 3\n")
    assert main(["sweep", str(path), "--out", "study", "--quiet"]) == 0
    evaluation = folder / "study" / "runs" / "seed=0" / "eval.json"
    assert json.loads(evaluation.read_text())["iwae_k"] == 3
    written = evaluation.stat().st_mtime_ns
    assert main(["sweep", str(path), "--out", "study", "--quiet"]) == 0
    assert evaluation.stat().st_mtime_ns == written  # done: not evaluated again
    assert "eval.active_units" in compare([folder / "study"]).columns
    with pytest.raises(VaekitError, match=r"\[evaluate\] takes k, quality, disentanglement, images, seed"):
        read_study(study_file(folder, '"train.seed" = [0]\n', base=BASE + "[evaluate]\nkk = 3\n"))


def test_workers_starting_at_once_make_one_whole_folder(folder: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    study = read_study(study_file(folder, '"train.seed" = [0, 1]\n'))
    for attempt in range(20):
        out = folder / f"together{attempt}"
        with ThreadPoolExecutor(4) as pool:
            made = list(pool.map(prepare_folder, [study] * 4, [out] * 4))
        assert made == [out] * 4 and (out / "study.toml").read_text() == study.text and (out / "runs").is_dir()
    assert not list(folder.glob(".together*"))  # no staging folder left behind
    (folder / "mine").mkdir()
    (folder / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(VaekitError, match="exists and is not a study folder"):
        prepare_folder(study, folder / "mine")
    assert sorted(p.name for p in (folder / "mine").iterdir()) == ["notes.txt"]
