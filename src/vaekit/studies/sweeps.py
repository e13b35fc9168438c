"""`vaekit sweep`: a study's runs, each an ordinary run folder under STUDY/runs/ that every vaekit
command works on, trained by one worker or several at once.

A worker takes the next run it can lock (`runs/NAME.lock`, an advisory lock the kernel drops with
the process that held it, SIGKILL included, so a killed worker never leaves a run claimed) and
that is not finished (its summary.json) or failed (`runs/NAME.failed.json`): a run folder with a
snapshot resumes exactly, one without is started afresh. Started again with the same command, a
study killed at any moment keeps its finished runs, resumes the interrupted ones and ends as one
never interrupted would. The study folder keeps the study file (`study.toml`: another study is
never run into it) and `study.json`, each run's state and test figures.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit.atomic import read_json, write_json, write_text
from vaekit.config import DataConfig, RunConfig
from vaekit.data import load_dataset
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.metrics.evaluation import evaluate_run, save_evaluation
from vaekit.studies.search import SearchStudy, search_fingerprint
from vaekit.studies.study import Study, StudyRun, fingerprint_of, parse_toml, read_study, read_text
from vaekit.training.loop import TrainingInterrupted
from vaekit.training.run import RESUME_FILE, resume_run, train_run

STUDY_FILE = "study.toml"
INDEX = "study.json"
RUNS = "runs"


@dataclass(frozen=True)
class RunState:
    """One run of a study: done (with its test figures), failed (with why), interrupted (its
    folder exists: the next sweep resumes it) or pending."""

    name: str
    values: dict[str, Any]
    state: str
    figures: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class StudyStatus:
    folder: Path
    runs: tuple[RunState, ...]

    @property
    def failed(self) -> list[RunState]:
        return [run for run in self.runs if run.state == "failed"]

    def table(self) -> str:
        """One line per run: its name, its state and its test -ELBO (or why it failed)."""
        width = max(len(run.name) for run in self.runs)
        lines = []
        for run in self.runs:
            shown = run.error or ""
            if run.figures is not None:
                # the -ELBO, or a deterministic encoder's reconstruction cost where it has none
                name, key = (
                    ("-ELBO", "test_nelbo_nats") if "test_nelbo_nats" in run.figures else ("recon", "test_recon_nats")
                )
                per = "item" if "per item" in str(run.figures.get("units", "")) else "image"  # a table's or images
                figure = run.figures.get(key)
                shown = f"test {name} {figure:.2f} nats/{per}" if isinstance(figure, (int, float)) else ""
            lines.append(f"  {run.name:<{width}}  {run.state:<11}  {shown}")
        done = sum(run.state == "done" for run in self.runs)
        return "\n".join([f"study {self.folder}: {done} of {len(self.runs)} runs done", *lines])


def _same_study(kept: Path, study: Study | SearchStudy) -> bool:
    """Whether the study file kept in a folder is `study`'s (compared as parsed, not rebuilt)."""
    identity = search_fingerprint if isinstance(study, SearchStudy) else fingerprint_of
    try:
        return identity(parse_toml(kept, read_text(kept))) == study.fingerprint
    except VaekitError:
        return False


def check_data(configs: list[RunConfig]) -> None:
    """Load each distinct data section the runs use once, before the study folder is made: data
    that is missing or unreadable is the study's bad input (one line, nothing written), not a
    failure of every run."""
    seen: list[DataConfig] = []
    for config in configs:
        if config.data not in seen:
            seen.append(config.data)
            load_dataset(config.data, progress=False)


def prepare_folder(study: Study | SearchStudy, out: str | Path) -> Path:
    """The study folder: created with the study file's copy, or an existing one of the same study.
    A folder that holds another study, or anything else, is refused: studies are never mixed."""
    out = Path(out)
    kept = out / STUDY_FILE
    if not kept.exists():
        foreign = out.exists() and (not out.is_dir() or any(out.iterdir()))
        if foreign and not kept.exists():  # looked at again: a worker beside this one may have just made it
            raise VaekitError(f"--out {out} exists and is not a study folder: choose another --out")
        if not foreign:
            _make_whole(study, out)
    if not _same_study(kept, study):
        raise VaekitError(
            f"study folder {out} holds another study ({kept} differs from {study.path}): choose another --out"
        )
    return out


def _make_whole(study: Study | SearchStudy, out: Path) -> None:
    """The study folder made in a sibling and renamed into place, so that a worker starting at the
    same moment finds no folder or a whole one (the study file's copy and runs/), never half."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would keep other users' workers out of a shared folder
        (staging / RUNS).mkdir()
        write_text(staging / STUDY_FILE, study.text)
        try:
            os.rename(staging, out)  # atomic; onto an empty folder too
        except OSError:  # another worker's rename came first
            if not (out / STUDY_FILE).exists():
                raise VaekitError(f"--out {out} exists and is not a study folder: choose another --out") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def claimed(lock_path: Path) -> Iterator[bool]:
    """Whether this process holds `lock_path`'s lock for the block (never waits for it)."""
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _failed_marker(folder: Path, run: StudyRun) -> Path:
    return folder / RUNS / f"{run.name}.failed.json"


def evaluate_run_folder(run_dir: Path, settings: dict[str, Any]) -> None:
    """What `vaekit evaluate` writes (eval.json) for a finished run, with the study's settings."""
    trained = load_run(run_dir)
    splits = trained.load_data()
    factors: bool = settings["disentanglement"]  # true: insist (data without factors is refused)
    seed = trained.config.train.seed if settings["seed"] == "run" else settings["seed"]
    result = evaluate_run(
        trained,
        splits,
        "test",
        settings["k"],
        seed,
        settings["quality"],
        limit=settings["images"],
        factors=factors,
        dci_train=settings["dci_train"],
    )
    save_evaluation(run_dir, result)


def _run_one(folder: Path, run: StudyRun, progress: bool) -> None:
    run_dir, evaluate = folder / RUNS / run.name, run.evaluate
    if _failed_marker(folder, run).exists() or _finished(run_dir, evaluate):
        return
    try:
        if (run_dir / "summary.json").exists():
            pass  # trained; its evaluation was interrupted
        elif (run_dir / "checkpoints" / RESUME_FILE).exists():
            resume_run(run_dir, progress=progress)
        else:  # never started, or stopped before its first snapshot: nothing to keep
            train_run(run.config, run_dir, force=run_dir.exists(), progress=progress)
        if evaluate is not None:
            evaluate_run_folder(run_dir, evaluate)
    except TrainingInterrupted:
        raise
    except VaekitError as exc:  # this run's own failure (diverged, too large...): the others go on
        write_json(_failed_marker(folder, run), {"error": str(exc)})


def _finished(run_dir: Path, evaluate: dict[str, Any] | None) -> bool:
    """Trained (summary.json) and, where the study evaluates its runs, evaluated (eval.json)."""
    return (run_dir / "summary.json").exists() and (evaluate is None or (run_dir / "eval.json").exists())


def work(study: Study, folder: Path, progress: bool = False, wait: float = 2.0) -> None:
    """One worker: every run it can claim, in the study's order, until every run is finished or
    failed. A run another worker holds is come back to: should that worker die (its lock freed by
    the kernel, or by a shared file system's server when its machine is gone), this one resumes it."""
    while True:
        held_elsewhere = False
        for run in study.runs:
            with claimed(folder / RUNS / f"{run.name}.lock") as mine:
                if mine:
                    _run_one(folder, run, progress)
                held_elsewhere = held_elsewhere or not mine
        if not held_elsewhere:
            return
        time.sleep(wait)


def status(study: Study, folder: Path) -> StudyStatus:
    """Each run's state, read from its folder (the folders are the truth; study.json mirrors them)."""
    states = []
    for run in study.runs:
        run_dir, marker = folder / RUNS / run.name, _failed_marker(folder, run)
        if _finished(run_dir, run.evaluate):
            figures = read_json(run_dir / "summary.json")
            states.append(RunState(run.name, run.values, "done", figures))
        elif marker.exists():
            states.append(RunState(run.name, run.values, "failed", error=read_json(marker).get("error")))
        else:
            states.append(RunState(run.name, run.values, "interrupted" if run_dir.exists() else "pending"))
    return StudyStatus(folder, tuple(states))


def write_index(study: Study, folder: Path) -> StudyStatus:
    found = status(study, folder)
    write_json(folder / INDEX, {"study": STUDY_FILE, "runs": [dataclasses.asdict(run) for run in found.runs]})
    return found


def die_with_parent() -> None:
    """In a worker process: be killed when the sweep that started it dies (Linux's PR_SET_PDEATHSIG),
    so a killed sweep leaves no worker training on."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def run_workers(arguments: list[str], workers: int, numbered: bool = False) -> None:
    """`vaekit ARGUMENTS` as `workers` processes of one worker each (`--worker I` too when
    `numbered`), the machine's cores divided between them; waits for them all."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    command = [sys.executable, "-m", "vaekit", *arguments, "--quiet", "--workers", "1", "--threads", str(threads)]
    processes = [
        subprocess.Popen(
            [*command, *(["--worker", str(index)] if numbered else [])],
            preexec_fn=die_with_parent,
            stdout=subprocess.DEVNULL,
        )
        for index in range(workers)
    ]
    for process in processes:
        process.wait()


def sweep(
    study: str | Path | Study, out: str | Path, workers: int = 1, progress: bool = False, threads: int | None = None
) -> StudyStatus:
    """Run (or continue) every run of `study` under the study folder `out`; `workers` at once,
    the machine's threads divided between them. Returns each run's state."""
    if workers < 1:
        raise VaekitError(f"--workers {workers} must be at least 1")
    study = study if isinstance(study, Study) else read_study(study)
    if threads is None:  # the command itself, not one of its workers
        check_data([run.config for run in study.runs])
    folder = prepare_folder(study, out)
    if threads is not None:
        torch.set_num_threads(threads)
    if workers == 1:
        work(study, folder, progress)
    else:
        run_workers(["sweep", str(study.path), "--out", str(folder)], workers)
    return write_index(study, folder)
