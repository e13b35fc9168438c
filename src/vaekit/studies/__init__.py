"""Many runs: a study file (a run's configuration plus the settings to vary) swept as ordinary run
folders under one study folder (`vaekit sweep`), a search for the best settings on Optuna
(`vaekit tune`), and runs compared side by side (`vaekit compare`)."""

from vaekit.studies.comparison import Comparison, compare
from vaekit.studies.study import Study, StudyRun, read_study
from vaekit.studies.sweeps import StudyStatus, sweep
from vaekit.studies.tuning import TuneResult, tune

__all__ = ["Comparison", "Study", "StudyRun", "StudyStatus", "TuneResult", "compare", "read_study", "sweep", "tune"]
