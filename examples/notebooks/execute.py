"""Run the notebooks top to bottom at their full settings and save them with their outputs, which
the docs site shows (the test suite runs them on tiny settings and saves nothing):

    python examples/notebooks/execute.py                  # every notebook here
    python examples/notebooks/execute.py first_vae.ipynb  # one

Runs go to runs/notebook-* under the current folder. Outputs are kept lean for the repository:
progress-bar widgets (live only while a cell runs) and the JPEG copy of each picture that has a
PNG are dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
WIDGET = "application/vnd.jupyter.widget-view+json"


def lean(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    book.metadata.pop("widgets", None)
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [out for out in cell.outputs if WIDGET not in out.get("data", {})]
        for out in cell.outputs:
            data = out.get("data", {})
            if "image/png" in data:
                data.pop("image/jpeg", None)
    return book


def main() -> None:
    names = sys.argv[1:] or sorted(path.name for path in HERE.glob("*.ipynb"))
    for name in names:
        path = HERE / name
        book = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(
            book, timeout=3600, kernel_name="python3", resources={"metadata": {"path": "."}}
        ).execute()
        nbformat.write(lean(book), path)
        print(f"saved {path} with its outputs", flush=True)


if __name__ == "__main__":
    main()
