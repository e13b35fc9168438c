"""Progress bars that are widgets in Jupyter and text in a terminal (tqdm's auto mode).

tqdm.auto picks the notebook widget when running under a Jupyter kernel with ipywidgets
installed (the `notebook` extra), and the text bar otherwise. A text bar is shown only when its
stream is a terminal (so logs and pipes stay clean); a widget is shown whenever bars are on, since
a notebook's output is never a terminal.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

# tqdm.auto's class derives from the notebook widget's under Jupyter, from the text bar's elsewhere
IN_NOTEBOOK = any(base.__module__ == "tqdm.notebook" for base in tqdm.__mro__)


def progress_bar(enabled: bool, **settings: Any) -> Any:
    """A tqdm bar: off unless `enabled`; on, a widget in a notebook, text on a terminal only."""
    return tqdm(disable=True if not enabled else (False if IN_NOTEBOOK else None), **settings)


def progress_by_default(progress: bool | None) -> bool:
    """Bars are on in a notebook and off elsewhere unless asked for (a script stays quiet)."""
    return IN_NOTEBOOK if progress is None else progress


write = tqdm.write  # a line printed without breaking the bar in progress
