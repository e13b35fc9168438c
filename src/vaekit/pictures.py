"""Every picture `vaekit plot` writes, as a function that returns it: for notebooks, where a
picture is something to look at inline, not a file to open.

    import vaekit
    from vaekit import pictures

    run = vaekit.load_run("runs/mlp")
    pictures.samples(run)          # a PIL image: Jupyter shows it below the cell
    pictures.latent_map(run)       # a matplotlib Figure
    run.plot("latent-map")         # the same, by the name `vaekit plot` uses

The names are `vaekit plot`'s with `_` for `-`. Grids of images come back as PIL images (enlarged
twice, as the PNG files are), charts as matplotlib Figures; a picture the run cannot have (image
grids of a table's run, samples of a VQ-VAE without its prior) raises VaekitError with the reason.
"""

from __future__ import annotations

import io
from typing import Any

from vaekit.loading import TrainedRun

PICTURE_SCALE = 2  # grids are enlarged as `vaekit plot` writes them
FIGURE_DPI = 72  # a figure inline in a notebook (smaller files than the 110 of `vaekit plot`)


def picture(run: TrainedRun, name: str, seed: int = 0) -> Any:
    """The picture `name` (a `vaekit plot` name) of `run`: a PIL image or a matplotlib Figure."""
    from matplotlib.figure import Figure
    from PIL import Image

    from vaekit.viz.gallery import PictureContext
    from vaekit.viz.gallery import picture as draw_picture

    drawn = draw_picture(PictureContext(run, run.splits(), seed), name)
    if isinstance(drawn, Figure):
        # vaekit's figures are made without pyplot (no global state, no GUI backend), and Jupyter's
        # inline display hooks only figures that pyplot made: the figure says how to show itself.
        drawn._repr_png_ = lambda: _png_of(drawn)  # type: ignore[attr-defined]
        return drawn
    image = Image.fromarray(drawn[..., 0] if drawn.shape[-1] == 1 else drawn)  # (H, W, C) uint8
    return image.resize((image.width * PICTURE_SCALE, image.height * PICTURE_SCALE), Image.Resampling.NEAREST)


def _png_of(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return buffer.getvalue()


def reconstructions(run: TrainedRun, seed: int = 0) -> Any:
    """Rows of test images, each over its reconstructions."""
    return picture(run, "reconstructions", seed)


def samples(run: TrainedRun, seed: int = 0) -> Any:
    """E[x|z] for z drawn from the prior."""
    return picture(run, "samples", seed)


def samples_drawn(run: TrainedRun, seed: int = 0) -> Any:
    """x ~ p(x|z) for z drawn from the prior: what the model generates."""
    return picture(run, "samples-drawn", seed)


def interpolations(run: TrainedRun, seed: int = 0) -> Any:
    """Walks between pairs of test images' codes, linear and spherical."""
    return picture(run, "interpolations", seed)


def traversals(run: TrainedRun, seed: int = 0) -> Any:
    """One latent dimension at a time from -3 to +3, the others at zero."""
    return picture(run, "traversals", seed)


def latent_map(run: TrainedRun, seed: int = 0) -> Any:
    """The test set's codes in two dimensions, coloured by label."""
    return picture(run, "latent-map", seed)


def manifold(run: TrainedRun, seed: int = 0) -> Any:
    """Images decoded over a grid of a two-dimensional latent plane."""
    return picture(run, "manifold", seed)


def curves(run: TrainedRun, seed: int = 0) -> Any:
    """The training curves: loss and its parts per epoch, in nats."""
    return picture(run, "curves", seed)


def scores(run: TrainedRun, seed: int = 0) -> Any:
    """The histogram of the test items' -ELBO, the anomaly score."""
    return picture(run, "scores", seed)


def anomalies(run: TrainedRun, seed: int = 0) -> Any:
    """The least typical test items, their reconstructions and errors."""
    return picture(run, "anomalies", seed)


def factors(run: TrainedRun, seed: int = 0) -> Any:
    """What each latent dimension says about each known factor of the data."""
    return picture(run, "factors", seed)


def marginals(run: TrainedRun, seed: int = 0) -> Any:
    """A table's columns: training rows beside rows drawn from the model."""
    return picture(run, "marginals", seed)
