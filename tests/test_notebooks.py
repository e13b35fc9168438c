"""The notebooks in examples/notebooks run top to bottom (on tiny settings: VAEKIT_NOTEBOOK_QUICK=1)
in a real Jupyter kernel, and show what a notebook user should see: progress bars as widgets, a
trained run as its card, pictures inline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(name: str, folder: Path) -> Any:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ["VAEKIT_NOTEBOOK_QUICK"] = "1"  # the kernel inherits it
    try:
        nbclient.NotebookClient(
            book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
        ).execute()
    finally:
        del os.environ["VAEKIT_NOTEBOOK_QUICK"]
    return book


def outputs(book: Any, kind: str) -> list[Any]:
    """Every output of the notebook's code cells that carries `kind` (a MIME type, or "image/"
    for any picture: a PIL image comes as PNG and JPEG, a figure as PNG)."""
    return [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if any(mime == kind or (kind.endswith("/") and mime.startswith(kind)) for mime in out.get("data", {}))
    ]


def fashion_mnist_at_hand() -> bool:
    return Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    not fashion_mnist_at_hand(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
)
def test_the_first_vae_notebook_shows_its_card_pictures_and_widget_bars(tmp_path: Path) -> None:
    book = execute("first_vae.ipynb", tmp_path)
    cards = [out["data"]["text/html"] for out in outputs(book, "text/html") if "vaekit run" in out["data"]["text/html"]]
    assert len(cards) == 1 and "nats per image" in cards[0] and "data:image/png;base64," in cards[0]
    assert len(outputs(book, "image/")) >= 5  # reconstructions, samples, traversals, latent map, curves
    assert outputs(book, WIDGET), "training in a notebook shows its progress bar as a widget"
    assert (tmp_path / "runs" / "notebook-first" / "summary.json").is_file()


@pytest.mark.slow
def test_the_table_notebook_draws_rows_and_fills_cells(tmp_path: Path) -> None:
    book = execute("your_table.ipynb", tmp_path)
    text = "".join(out.get("text", "") for cell in book.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "cells filled" in text and "% right" in text
    tables = [out["data"]["text/html"] for out in outputs(book, "text/html")]
    assert any("malignant" in html and "mean radius" in html for html in tables)  # rows drawn on a condition
    assert len(outputs(book, "image/")) >= 2  # the marginals and the digits' reconstructions


@pytest.mark.slow
def test_the_comparison_notebook_tabulates_three_runs(tmp_path: Path) -> None:
    book = execute("comparing_objectives.ipynb", tmp_path)
    table = next(
        out["data"]["text/html"] for out in outputs(book, "text/html") if "test_nelbo_nats" in out["data"]["text/html"]
    )
    assert table.count("<tr>") == 1 + 3  # the header and one row per objective
    assert len(outputs(book, "image/")) == 6  # reconstructions and samples of each run
    shutil.rmtree(tmp_path / "runs")
