"""Training: `fit` and `resume` from Python (api.py), the loop (loop.py) and its resumable
state (state.py), the callbacks around it (callbacks.py), the run folder and resuming (run.py),
and data parallelism under torchrun (distributed.py).

Imports models, data, metrics and viz. Nothing outside training/ imports it but the CLI and the
package's lazy `vaekit.train_run`.
"""

from vaekit.training.api import fit, resume
from vaekit.training.callbacks import Callback, ConsoleReport, EarlyStopping, EpochReport, RunWriter
from vaekit.training.loop import TrainingDiverged, TrainingInterrupted, train_model
from vaekit.training.run import TrainResult, resume_run, train_run

__all__ = [
    "Callback",
    "ConsoleReport",
    "EarlyStopping",
    "EpochReport",
    "RunWriter",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "fit",
    "resume",
    "resume_run",
    "train_model",
    "train_run",
]
