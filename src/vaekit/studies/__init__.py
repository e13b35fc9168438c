"""Many runs: a study file (a run's configuration plus the settings to vary) swept as ordinary run
folders under one study folder (`vaekit sweep`), and runs compared side by side (`vaekit compare`)."""

from vaekit.studies.comparison import Comparison, compare
from vaekit.studies.study import Study, StudyRun, read_study
from vaekit.studies.sweeps import StudyStatus, sweep

__all__ = ["Comparison", "Study", "StudyRun", "StudyStatus", "compare", "read_study", "sweep"]
