"""`vaekit tune`: a search for the best settings on Optuna (its TPE sampler, its median pruner,
its storage: an SQLite file in the study folder by default).

Each trial is an ordinary run folder, `runs/trial-NNNN`; its value is the `[tune]` metric of the
validation split at the epoch the run keeps (metrics.jsonl), and a trial whose epoch figures are
hopeless against the others' at the same epoch is pruned. A worker holds the advisory lock
`runs/trial-NNNN.lock` while it trains a trial, as a sweep does: started again, `vaekit tune`
finds the trials the storage still calls running whose lock is free (their worker was killed),
marks them failed-by-interruption, and queues their settings again with the folder to resume, so
the next trial continues that run exactly where it stopped. The budget counts finished trials
(complete, pruned, or failed on their own), never interrupted ones.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit.atomic import read_json, read_json_lines, write_json
from vaekit.errors import VaekitError
from vaekit.studies.search import Range, SearchStudy, read_search
from vaekit.studies.study import build_run_config
from vaekit.studies.sweeps import RUNS, check_data, claimed, prepare_folder, run_workers
from vaekit.training.callbacks import EpochReport
from vaekit.training.loop import TrainingInterrupted
from vaekit.training.run import RESUME_FILE, resume_run, train_run

STORAGE_FILE = "optuna.db"
STUDY_NAME = "vaekit"
INDEX = "tune.json"
INTERRUPTED = "interrupted"  # a trial's user attribute: its worker died; not counted in the budget
RESUMES = "resumes"  # a queued trial's user attribute: the run folder it continues


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise VaekitError("vaekit tune needs Optuna: pip install 'vaekit[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@contextlib.contextmanager
def _quietly(optuna: Any) -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _storage(folder: Path, url: str | None, heartbeat: int) -> Any:
    """The study's storage. A database (SQLite, PostgreSQL, MySQL) keeps each running trial's
    heartbeat: a trial whose worker, on any machine, has been silent for three heartbeats is
    failed and queued again (Optuna's RetryFailedTrialCallback), its settings and folder with it."""
    optuna = _optuna()
    url = url or f"sqlite:///{(folder / STORAGE_FILE).resolve()}"
    for attempt in range(4):
        try:
            return _open_storage(optuna, url, heartbeat)
        except Exception as exc:  # a URL nothing answers at, a driver not installed: one line
            # workers started together race to create the storage's tables: the loser tries again
            if attempt < 3 and any(word in str(exc) for word in ("already exists", "duplicate key", "UniqueViolation")):
                time.sleep(0.5 * (attempt + 1))
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise VaekitError(f"--storage {url} cannot be used ({type(exc).__name__}: {first})") from None
    raise AssertionError("unreachable")


def _open_storage(optuna: Any, url: str, heartbeat: int) -> Any:
    if "://" in url and url.split(":", 1)[0].split("+")[0] in ("sqlite", "postgresql", "mysql"):
        with _quietly(optuna):  # heartbeats are "experimental" in Optuna since 2.8: they are what we need
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, heartbeat_stale_trial_callback=retry
            )
    return optuna.storages.get_storage(url)


def _suggest(trial: Any, key: str, dimension: Range | list[Any]) -> Any:
    if isinstance(dimension, list):
        return trial.suggest_categorical(key, dimension)
    if dimension.integer:
        return trial.suggest_int(key, int(dimension.low), int(dimension.high), log=dimension.log)
    return trial.suggest_float(key, float(dimension.low), float(dimension.high), log=dimension.log)


class Pruning:
    """A training callback: reports each epoch's validation figure to the trial and stops the run
    when the pruner says the trial is hopeless."""

    def __init__(self, trial: Any, metric: str, enabled: bool) -> None:
        self.trial, self.metric, self.enabled = trial, metric, enabled

    def on_epoch_end(self, model: Any, report: EpochReport) -> None:
        if report.val is None:
            return
        value = report.val.to_dict(prefix="val_").get(self.metric)
        if not isinstance(value, float):
            return
        self.trial.report(value, report.epoch)
        if self.enabled and self.trial.should_prune():
            raise _optuna().TrialPruned(f"epoch {report.epoch}: {self.metric} {value:.2f}")


def kept_value(run_dir: Path, metric: str) -> float:
    """The metric at the epoch the run kept (summary.json's best_epoch), from metrics.jsonl."""
    summary = read_json(run_dir / "summary.json", "a run's summary")
    epochs = {line.get("epoch"): line for line in read_json_lines(run_dir / "metrics.jsonl") if isinstance(line, dict)}
    line = epochs.get(summary.get("best_epoch")) or epochs[max(k for k in epochs if isinstance(k, int))]
    if not isinstance(line.get(metric), (int, float)):
        raise VaekitError(f"{run_dir}: metrics.jsonl has no {metric} (a run without a validation split?)")
    return float(line[metric])


class TrialFailed(Exception):
    """A trial that failed on its own: Optuna marks it failed and the search goes on."""


@dataclass
class Objective:
    study: SearchStudy
    folder: Path
    progress: bool

    def __call__(self, trial: Any) -> float:
        values = {key: _suggest(trial, key, dim) for key, dim in self.study.space.items()}
        # a trial queued again (its worker died: here, or silent on another machine) keeps its folder
        name = trial.user_attrs.get(RESUMES) or trial.user_attrs.get("folder") or f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", name)
        run_dir = self.folder / RUNS / name
        with claimed(self.folder / RUNS / f"{name}.lock") as mine:
            if not mine:  # its worker is alive after all (a heartbeat came late): leave the run to it
                trial.set_user_attr("error", f"{run_dir} is being trained by another worker")
                raise TrialFailed(trial.user_attrs["error"])
            try:
                self._train(trial, values, run_dir)
            except TrainingInterrupted:  # Ctrl-C: a snapshot was written; the next tune resumes it
                trial.set_user_attr(INTERRUPTED, True)
                trial.study.enqueue_trial(trial.params, user_attrs={RESUMES: name}, skip_if_exists=False)
                raise
            except VaekitError as exc:  # this trial's own failure (diverged, too large): the others go on
                trial.set_user_attr("error", str(exc))
                raise TrialFailed(str(exc)) from None
        return kept_value(run_dir, self.study.metric)

    def _train(self, trial: Any, values: dict[str, Any], run_dir: Path) -> None:
        callback = Pruning(trial, self.study.metric, self.study.prune)
        if (run_dir / "summary.json").exists():
            return  # finished, but its worker died before telling the storage
        if (run_dir / "checkpoints" / RESUME_FILE).exists():
            resume_run(run_dir, progress=self.progress, callbacks=[callback])
            return
        config = build_run_config(self.study.base, values, run_dir.name, f"study file {self.study.path}")
        train_run(config, run_dir, force=run_dir.exists(), progress=self.progress, callbacks=[callback])


def _finished(optuna_study: Any) -> int:
    optuna = _optuna()
    states = optuna.trial.TrialState
    # a trial failed on its own has its error; one whose worker died has none, and is retried
    return sum(
        trial.state in (states.COMPLETE, states.PRUNED) or (trial.state == states.FAIL and "error" in trial.user_attrs)
        for trial in optuna_study.get_trials(deepcopy=False)
    )


def recover_interrupted(optuna_study: Any, storage: Any, folder: Path) -> int:
    """Trials the storage calls running whose worker is gone (their lock is free): marked failed
    by interruption and queued again to resume their run folders. Returns how many."""
    states = _optuna().trial.TrialState
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    found = 0
    for trial in optuna_study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        name = trial.user_attrs.get("folder")
        if name is None:
            continue
        with claimed(folder / RUNS / f"{name}.lock") as free:
            if not free:
                continue  # its worker is alive
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            storage.set_trial_state_values(trial_id, states.FAIL)
            optuna_study.enqueue_trial(trial.params, user_attrs={RESUMES: name}, skip_if_exists=False)
            found += 1
    return found


def _finish_the_others(optuna_study: Any, objective: Objective, heartbeat: int) -> None:
    """With the budget reached, stay while other trials still run: one whose worker dies is
    queued again after three silent heartbeats, and this worker resumes it."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    while True:
        with _quietly(optuna):
            optuna.storages.fail_stale_trials(optuna_study)
        trials = optuna_study.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING))
        if not trials:
            return
        if any(trial.state == states.WAITING for trial in trials):
            optuna_study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        else:
            time.sleep(min(heartbeat, 2))


@dataclass(frozen=True)
class TuneResult:
    folder: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    metric: str

    def table(self) -> str:
        lines = [
            f"study {self.folder}: {sum(t['state'] in ('COMPLETE', 'PRUNED') for t in self.trials)} trials finished"
        ]
        for t in self.trials:
            value = "" if t["value"] is None else f"{self.metric} {t['value']:.2f}"
            shown = ", ".join(f"{k.partition('.')[2]}={_short(v)}" for k, v in t["params"].items())
            why = f"  {t['error']}" if t.get("error") else ""
            state = "STOPPED" if t.get("interrupted") else t["state"]  # its worker died; a later trial resumed it
            lines.append(f"  {t['folder'] or '-':<11} {state:<9} {value:<28} {shown}{why}")
        if self.best is not None:
            lines.append(f"best: {self.best['folder']} ({self.metric} {self.best['value']:.2f}), {self.best['params']}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_index(optuna_study: Any, folder: Path, metric: str) -> TuneResult:
    states = _optuna().trial.TrialState
    trials = [
        {
            "number": t.number,
            "folder": t.user_attrs.get("folder"),
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
            **({"interrupted": True} if t.user_attrs.get(INTERRUPTED) else {}),
        }
        for t in optuna_study.get_trials(deepcopy=False)
    ]
    complete = [t for t in trials if t["state"] == states.COMPLETE.name]
    direction = optuna_study.direction.name.lower()
    best = (min if direction == "minimize" else max)(complete, key=lambda t: t["value"]) if complete else None
    write_json(folder / INDEX, {"metric": metric, "direction": direction, "best": best, "trials": trials})
    return TuneResult(folder, trials, best, metric)


def tune(
    study: str | Path | SearchStudy,
    out: str | Path,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    progress: bool = False,
    threads: int | None = None,
    worker: int = 0,
    heartbeat: int = 60,
) -> TuneResult:
    """Search `study`'s space until `trials` trials (by default its [tune] trials) have finished,
    in the study folder `out`; `workers` at once on this machine (each worker's sampler seeded
    apart, `worker` its index, so that two never propose the same settings in step; the budget
    may then be passed by a trial or two that finished together)."""
    if workers < 1:
        raise VaekitError(f"--workers {workers} must be at least 1")
    if trials is not None and trials < 1:
        raise VaekitError(f"--trials {trials} must be at least 1")
    study = study if isinstance(study, SearchStudy) else read_search(study)
    optuna = _optuna()
    if threads is None:  # the command itself, not one of its workers
        check_data(list(study.checked))
    # a storage given by URL is tried before the folder is made: one that cannot be used writes nothing
    backend = _storage(Path(out), storage, heartbeat) if storage is not None else None
    folder = prepare_folder(study, out)
    backend = backend if backend is not None else _storage(folder, None, heartbeat)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    optuna_study = optuna.create_study(
        study_name=STUDY_NAME, storage=backend, pruner=pruner, direction=study.direction, load_if_exists=True
    )
    # Seeded apart per worker and per start: a study started again draws new settings, not its
    # first ones over again.
    started = len(optuna_study.get_trials(deepcopy=False))
    optuna_study.sampler = optuna.samplers.TPESampler(seed=study.seed + worker + 7919 * started)
    budget = trials or study.trials
    if threads is None:  # the command itself, not one of its workers: it alone recovers dead trials
        recover_interrupted(optuna_study, backend, folder)
    else:
        torch.set_num_threads(threads)
    if workers > 1:
        arguments = ["tune", str(study.path), "--out", str(folder), "--heartbeat", str(heartbeat)]
        arguments += [*(["--storage", storage] if storage else []), *(["--trials", str(trials)] if trials else [])]
        run_workers(arguments, workers, numbered=True)
    else:

        def enough(optuna_study: Any, trial: Any) -> None:
            if _finished(optuna_study) >= budget:
                optuna_study.stop()

        objective = Objective(study, folder, progress)
        if _finished(optuna_study) < budget:
            optuna_study.optimize(objective, callbacks=[enough], catch=(TrialFailed,))
        _finish_the_others(optuna_study, objective, heartbeat)
    return write_index(optuna_study, folder, study.metric)
