"""`--track mlflow[:URI]` and `--track wandb[:PROJECT]`: a run logged to the experiment trackers
teams already use, built on their own packages (optional extras, imported only with the flag).

What each tracker receives: the run's settings (once, when the run starts), every optimiser step's
loss and its parts, every epoch's training and validation figures, the test figures at the end
(each figure with its unit in its name: `val/nelbo_nats_per_image`), the run's last pictures, and
the run folder as an artifact. The tracked run's identity is kept in the run folder
(tracking.json), so `vaekit resume` continues the same tracked run instead of starting another.
Trackers live on rank 0 only: a run of several processes is logged once.

A tracker that cannot start (its package missing, its store unreachable, W&B without a login
outside offline mode) stops the command before the run folder is touched, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from vaekit.atomic import read_json, write_json
from vaekit.config import RunConfig, TrackerChoice, flat_settings, parse_track
from vaekit.metrics.meaning import item_word
from vaekit.models import VAE
from vaekit.training.callbacks import EpochReport, StepReport
from vaekit.viz.card import last_pictures

STATE_FILE = "tracking.json"  # in the run folder: which tracked runs this run logs to


class Tracker(Protocol):
    """One tracked run: what vaekit logs, in the tracker's own calls."""

    kind: str  # mlflow or wandb: its key in tracking.json

    def state(self) -> dict[str, Any]: ...  # what reopens the same tracked run on resume
    def log_settings(self, settings: dict[str, Any]) -> None: ...
    def log_figures(self, figures: dict[str, float], step: int) -> None: ...
    def log_pictures(self, pictures: dict[str, Path], step: int) -> None: ...
    def log_folder(self, folder: Path) -> None: ...
    def flush(self) -> None: ...
    def end(self, status: str) -> None: ...  # FINISHED, FAILED or KILLED


def _open(choice: TrackerChoice, run_name: str, state: dict[str, Any] | None) -> Tracker:
    if choice.kind == "mlflow":
        from vaekit.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker.open(choice.target, run_name, state)
    from vaekit.tracking.wandb_tracker import WandbTracker

    return WandbTracker.open(choice.target, run_name, state)


class Trackers:
    """Every tracker of a run, as one training callback (rank 0 only): per-step and per-epoch
    figures while training, then the test figures, pictures and the folder at `finish`."""

    def __init__(self, trackers: list[Tracker], item: str, logged: dict[str, int] | None = None) -> None:
        self.trackers = trackers
        self.per_item = f"nats_per_{item}"
        # A resumed run trains again from its snapshot the steps it had logged past it (to the
        # same figures): the last step whose figures and whose epoch's figures were logged, so
        # that none is logged twice.
        self.logged = {"step": 0, "epoch": 0, **(logged or {})}
        self.run_dir: Path | None = None

    @classmethod
    def start(cls, config: RunConfig, run_dir: Path, resuming: bool) -> Trackers | None:
        """Open the run's trackers (None without --track): new tracked runs, or on resume the
        ones the run folder names. Refuses, before anything is logged, a tracker that cannot start."""
        choices = parse_track(config.train.track)
        if not choices:
            return None
        saved = read_json(run_dir / STATE_FILE) if resuming and (run_dir / STATE_FILE).is_file() else {}
        opened: list[Tracker] = []
        try:
            for choice in choices:
                opened.append(_open(choice, run_dir.name, saved.get(choice.kind)))
        except BaseException:
            for tracker in opened:
                tracker.end("FAILED")
            raise
        trackers = cls(opened, item_word(config.data), saved.get("logged_through"))
        if not any(choice.kind in saved for choice in choices):
            for tracker in opened:
                tracker.log_settings(flat_settings(config))
        return trackers

    def save_state(self, run_dir: Path) -> None:
        """Which tracked runs this run logs to, and through which step, in the run folder."""
        self.run_dir = run_dir
        state: dict[str, Any] = {t.kind: t.state() for t in self.trackers}
        write_json(run_dir / STATE_FILE, {**state, "logged_through": self.logged})

    def _log(self, figures: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_figures(figures, step)

    def on_step(self, report: StepReport) -> None:
        if report.step <= self.logged["step"]:
            return
        self.logged["step"] = report.step
        unit = self.per_item
        figures = {f"train/loss_{unit}": report.loss, f"train/recon_{unit}": report.recon_nats}
        figures.update({f"train/kl_{unit}": report.kl_nats, "train/beta": report.beta, "train/lr": report.lr})
        figures.update({f"train/{name}": value for name, value in report.terms.items()})  # units in their names
        self._log(figures, report.step)

    def on_epoch_end(self, model: VAE, report: EpochReport) -> None:
        if report.step <= self.logged["epoch"]:
            return
        unit = self.per_item
        figures = {"epoch/epoch": float(report.epoch), f"epoch/train_loss_{unit}": report.train_loss}
        figures.update({"epoch/seconds": report.epoch_seconds, "epoch/items_per_second": report.images_per_second})
        figures["epoch/skipped_steps"] = float(report.skipped_steps)
        if report.val is not None:
            figures.update({f"val/nelbo_{unit}": report.val.nelbo_nats, f"val/recon_{unit}": report.val.recon_nats})
            figures[f"val/kl_{unit}"] = report.val.kl_nats
        self._log(figures, report.step)
        self.logged["epoch"] = report.step
        self._flush()

    def _flush(self) -> None:
        for tracker in self.trackers:
            tracker.flush()
        if self.run_dir is not None:
            self.save_state(self.run_dir)

    def close(self) -> None:
        """Training ended or stopped: write out what is buffered (the tracked runs stay open for
        `finish`, or for `abort` when the run did not get that far)."""
        self._flush()

    def finish(self, run_dir: Path, step: int) -> None:
        """The run is complete: its test figures, its last pictures, the folder, then the end."""
        summary = read_json(run_dir / "summary.json")
        figures = {
            f"test/{key.removeprefix('test_').removesuffix('_nats')}_{self.per_item}"
            if key.endswith("_nats")
            else f"test/{key.removeprefix('test_')}": float(value)
            for key, value in summary.items()
            if key.startswith("test_") and isinstance(value, int | float) and not isinstance(value, bool)
        }
        pictures = last_pictures(run_dir / "images")
        for tracker in self.trackers:
            tracker.log_figures(figures, step)
            tracker.log_pictures(pictures, step)
            tracker.log_folder(run_dir)
            tracker.end("FINISHED")

    def abort(self, interrupted: bool) -> None:
        for tracker in self.trackers:
            tracker.end("KILLED" if interrupted else "FAILED")
