"""vaekit: Variational Autoencoders with correct math, from Python or one command.

from vaekit import load_run
run = load_run("runs/mlp")
z = run.model.encode(run.prepare(images)).mode()
"""

from vaekit.config import PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, preset_config, resolve
from vaekit.errors import VaekitError
from vaekit.models import VAE, build_model
from vaekit.runs import TrainedRun, load_run, train_run

__version__ = "0.1.0"

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
