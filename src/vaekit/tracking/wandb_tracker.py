"""A run logged to Weights & Biases (`pip install wandb`): `--track wandb[:PROJECT]`, the project
else WANDB_PROJECT's or `vaekit`. W&B's own settings apply as usual: WANDB_MODE=offline logs to
./wandb (or WANDB_DIR) for `wandb sync` later; outside offline mode W&B needs a login (`wandb
login`, or WANDB_API_KEY), checked before training rather than prompted for in the middle of it.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from vaekit.errors import VaekitError

PROJECT = "vaekit"
LOCAL_MODES = ("offline", "disabled", "dryrun")
EXIT_CODES = {"FINISHED": 0, "FAILED": 1, "KILLED": 130}  # 130: what a shell reports for Ctrl-C


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbTracker:
    kind = "wandb"

    def __init__(self, run: Any, project: str) -> None:
        self.run = run
        self.project = project

    @classmethod
    def open(cls, project: str | None, run_name: str, state: dict[str, Any] | None) -> WandbTracker:
        try:
            import wandb
        except ImportError:
            raise VaekitError(
                "--track wandb needs the wandb package: pip install wandb (or leave --track out)"
            ) from None
        if os.environ.get("WANDB_MODE", "online") not in LOCAL_MODES and not _logged_in():
            raise VaekitError(
                "--track wandb: not logged in to W&B: run `wandb login` (or set WANDB_API_KEY), or set "
                "WANDB_MODE=offline to log locally and `wandb sync` later"
            )
        project = (state or {}).get("project") or project or os.environ.get("WANDB_PROJECT", PROJECT)
        resumed = {"id": state["id"], "resume": "allow"} if state is not None else {}
        try:
            run = wandb.init(project=project, name=run_name, reinit="create_new", **resumed)
        except Exception as error:  # W&B raises several kinds: each means it cannot log this run
            raise VaekitError(f"--track wandb: W&B could not start a run ({str(error)[:200]})") from None
        return cls(run, project)

    def state(self) -> dict[str, Any]:
        return {"project": self.project, "id": self.run.id}

    def log_settings(self, settings: dict[str, Any]) -> None:
        self.run.config.update({key: _plain(value) for key, value in settings.items()}, allow_val_change=True)

    def log_figures(self, figures: dict[str, float], step: int) -> None:
        self.run.log(figures, step=step)

    def log_pictures(self, pictures: dict[str, Path], step: int) -> None:
        import wandb

        self.run.log({f"pictures/{name}": wandb.Image(str(path)) for name, path in pictures.items()}, step=step)

    def log_folder(self, folder: Path) -> None:
        import wandb

        artifact = wandb.Artifact(f"run-{self.run.id}", type="vaekit-run")
        artifact.add_dir(str(folder))
        self.run.log_artifact(artifact)

    def flush(self) -> None:
        """W&B writes as it goes (its own process): nothing to push."""

    def end(self, status: str) -> None:
        self.run.finish(exit_code=EXIT_CODES[status])


def _plain(value: Any) -> Any:
    """Settings as W&B's config holds them: tuples as lists, None as it is."""
    return list(value) if isinstance(value, tuple) else value
