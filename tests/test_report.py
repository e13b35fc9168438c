"""Pictures and the HTML report of a small trained run, checked in a real headless browser."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, blob_images, playwright_or_skip
from vaekit.cli import PICTURE_NAMES
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.training.run import train_run
from vaekit.viz.gallery import TABLE_ONLY

# every picture `vaekit plot all` offers an image run without known factors (the factors picture is
# tested on dSprites in tests/test_disentanglement.py, a table's marginals in tests/test_mixed_tables.py)
PICTURES = [name for name in PICTURE_NAMES if name not in ("factors", *TABLE_ONLY)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    images, labels = blob_images(300, side=16)
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(root / "blobs.npz")),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=4),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3),
    )
    return train_run(config, root / "run", progress=False).run_dir


def vaekit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAEKIT_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, env=env, timeout=300)


def test_every_plot_is_a_png_of_the_expected_size(run_dir: Path, tmp_path: Path) -> None:
    result = vaekit("plot", "--run", str(run_dir), "all", "--out-dir", str(tmp_path), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    sizes = {name: Image.open(tmp_path / f"{name}.png").size for name in PICTURES}
    cell = 16 + 2  # image side plus the gap between images
    assert sizes["reconstructions"] == (2 * (8 * cell + 2), 2 * (8 * cell + 2))  # 4 row pairs of 8 images
    assert sizes["samples"] == sizes["samples-drawn"] == (2 * (8 * cell + 2), 2 * (8 * cell + 2))
    assert sizes["interpolations"] == (2 * (10 * cell + 2), 2 * (8 * cell + 2))  # 4 pairs x (linear, slerp)
    assert sizes["traversals"] == (2 * (9 * cell + 2), 2 * (4 * cell + 2))  # one row per latent dimension
    assert sizes["manifold"] == (2 * 15 * 16, 2 * 15 * 16)
    for name in ("curves", "latent-map"):  # matplotlib figures: size depends on layout
        width, height = sizes[name]
        assert width > 400 and height > 300, name
    assert not any((tmp_path / f"{name}.png").exists() for name in TABLE_ONLY)
    for name in PICTURES:
        pixels = np.asarray(Image.open(tmp_path / f"{name}.png").convert("L"))
        assert pixels.std() > 5, f"{name} is blank"


@pytest.mark.slow
def test_evaluate_writes_eval_json(run_dir: Path) -> None:
    result = vaekit("evaluate", "--run", str(run_dir), "--k", "20", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "IWAE K=20" in result.stdout and "nats/image" in result.stdout and "active units" in result.stdout
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["iwae_k"] == 20 and evaluation["split"] == "test"
    assert evaluation["iwae_cross_entropy_nats"] <= evaluation["elbo_cross_entropy_nats"] + 1.0  # grey pixels
    assert len(evaluation["kl_per_dim_nats"]) == 4
    assert evaluation["quality"]["classifier_test_accuracy"] > 0.9


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(run_dir: Path, tmp_path: Path) -> None:
    result = vaekit("report", "--run", str(run_dir), "--k", "10", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = run_dir / "report.html"
    text = report.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    sync_api = playwright_or_skip()
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({alt: e.alt, ok: e.complete && e.naturalWidth > 0}))"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        headline = page.text_content("#evaluation")
        browser.close()
    assert errors == []
    assert len(images) == len(PICTURES) and all(image["ok"] for image in images), images
    assert headline is not None and "negative ELBO" in headline
    assert Image.open(tmp_path / "report.png").size[1] > 2000


def test_the_latent_map_colours_panels_of_different_sizes() -> None:
    """The t-SNE panel shows the first points only; each panel takes its share of the labels."""
    from vaekit.viz.figures import latent_map

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=50)
    panels = [("PCA", rng.normal(size=(50, 2))), ("t-SNE", rng.normal(size=(20, 2)))]
    figure = latent_map(panels, labels, ("a", "b", "c"))
    coloured = [ax.collections[0].get_array() for ax in figure.axes]
    assert [len(c) for c in coloured] == [50, 20]
    np.testing.assert_array_equal(coloured[1], labels[:20])


def test_every_picture_is_a_function_that_returns_what_vaekit_plot_writes(run_dir: Path, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from vaekit import pictures
    from vaekit.loading import load_run
    from vaekit.viz.gallery import PICTURES as DRAWN
    from vaekit.viz.gallery import PictureContext, draw

    functions = {name.replace("_", "-") for name in dir(pictures) if not name.startswith("_")}
    assert set(DRAWN) <= functions  # every `vaekit plot` name has its function
    run = load_run(run_dir)
    for name in PICTURES:
        shown = getattr(pictures, name.replace("-", "_"))(run)
        if isinstance(shown, Figure):
            assert shown._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # Jupyter shows it without pyplot
            continue
        written = draw(PictureContext(run, run.load_data()), name, tmp_path / f"{name}.png")
        assert np.array_equal(np.asarray(shown), np.asarray(Image.open(written))), name


def test_a_run_shows_itself_in_a_line_and_a_card(run_dir: Path) -> None:
    from vaekit.loading import load_run

    run = load_run(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"test -ELBO {summary['test_nelbo_nats']:.2f} nats per image" in repr(run)
    card = run._repr_html_()
    assert f"{summary['test_kl_nats']:.2f} nats per image" in card and card.count("data:image/png;base64,") == 2
    (run_dir / "summary.json").rename(run_dir / "summary.hidden")  # a run still training: no figures yet
    try:
        assert "not finished" in repr(load_run(run_dir)) and "no test figures yet" in load_run(run_dir)._repr_html_()
    finally:
        (run_dir / "summary.hidden").rename(run_dir / "summary.json")
