"""vaekit: Variational Autoencoders with correct math, from Python or one command.

from vaekit import load_run
run = load_run("runs/mlp")
z = run.model.encode(run.prepare(images)).mode()

Names are imported on first use (PEP 562), so `import vaekit` is cheap and code that only loads
runs (metrics, pictures, the web app) never imports the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# exported name -> the module that defines it
_EXPORTS = {
    "DataConfig": "vaekit.config",
    "ModelConfig": "vaekit.config",
    "RunConfig": "vaekit.config",
    "TrainConfig": "vaekit.config",
    "PRESETS": "vaekit.presets",
    "preset_config": "vaekit.presets",
    "resolve": "vaekit.presets",
    "VaekitError": "vaekit.errors",
    "VAE": "vaekit.models",
    "build_model": "vaekit.models",
    "TrainedRun": "vaekit.loading",
    "load_run": "vaekit.loading",
    "train_run": "vaekit.training.run",
}

__all__ = [
    "PRESETS",
    "VAE",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "TrainedRun",
    "VaekitError",
    "build_model",
    "load_run",
    "preset_config",
    "resolve",
    "train_run",
]

if TYPE_CHECKING:
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.errors import VaekitError
    from vaekit.loading import TrainedRun, load_run
    from vaekit.models import VAE, build_model
    from vaekit.presets import PRESETS, preset_config, resolve
    from vaekit.training.run import train_run


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
