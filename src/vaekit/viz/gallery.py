"""The pictures people look at, drawn from a trained run: each function returns a PNG-ready
uint8 picture (H, W, C) or a matplotlib Figure.

Shapes: N images, (C, H, W) image, Z latent, T steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from vaekit.atomic import read_json_lines
from vaekit.data import DatasetSplits
from vaekit.errors import VaekitError
from vaekit.latent import latent_plane, lerp, manifold_codes, slerp, traversal
from vaekit.loading import TrainedRun
from vaekit.metrics.disentanglement import information_shares
from vaekit.metrics.latents import latent_means, latent_usage
from vaekit.metrics.meaning import has_elbo, item_word
from vaekit.metrics.scores import has_excess, score_by
from vaekit.viz.figures import (
    column_marginals,
    factor_heatmap,
    labelled_rows,
    latent_map,
    save_figure,
    score_histogram,
    training_curves,
)
from vaekit.viz.grid import make_grid, reconstruction_grid, sample_grid, save_png


@dataclass
class PictureContext:
    run: TrainedRun
    splits: DatasetSplits
    seed: int = 0

    @property
    def generator(self) -> torch.Generator:
        return torch.Generator(self.run.model.device).manual_seed(self.seed)

    def decode_to_display(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes (N, Z) -> E[x|z] for display; a conditional model decodes them under the
        first test item's label (`shown_label`)."""
        model = self.run.model
        label = self.shown_label()
        y = None if label is None else torch.full((len(z),), label, device=model.device)
        with torch.no_grad():
            return self.run.to_display(model.mean_image(model.decode(z.to(model.device), y)))

    def test_labels(self, items: np.ndarray | slice) -> np.ndarray | None:
        """A conditional model's labels for these test items; None for an unconditional one."""
        return self.run.model.conditioning(self.splits.test.take(items).labels, "the test set")

    def on_device(self, labels: np.ndarray | None) -> torch.Tensor | None:
        return None if labels is None else torch.from_numpy(labels).to(self.run.model.device)

    def shown_label(self) -> int | None:
        """The class a conditional model's latent pictures are decoded under: the first test item's."""
        y = self.test_labels(slice(0, 1))
        return None if y is None else int(y[0])

    def test_means(self, count: int | None = None) -> torch.Tensor:
        images = self.splits.test.images[:count]
        labels = self.test_labels(slice(0, len(images)))
        return torch.from_numpy(latent_means(self.run.model, images, self.run.config.data, labels=labels)).float()


def reconstructions(ctx: PictureContext, n: int = 32) -> np.ndarray:
    x = ctx.run.prepare(ctx.splits.test.images[:n], ctx.generator)
    recon = ctx.run.model.reconstruct(x, ctx.on_device(ctx.test_labels(slice(0, len(x)))))
    return reconstruction_grid(ctx.run.to_display(x), ctx.run.to_display(recon))


CLASS_COLUMNS = 10  # samples per class in a conditional model's pictures


def _prior_samples(ctx: PictureContext, n: int, draw: bool) -> np.ndarray:
    """n prior samples in a square grid; for a conditional model, one row per class, CLASS_COLUMNS
    each, every row from the same draws of z: a column is one z (one style) in every class."""
    model = ctx.run.model
    if not model.classes:
        return sample_grid(ctx.run.to_display(model.sample(n, ctx.generator, draw=draw)))
    rows = [
        model.sample(CLASS_COLUMNS, ctx.generator, draw=draw, y=torch.full((CLASS_COLUMNS,), k, device=model.device))
        for k in range(model.classes)  # ctx.generator is a new one, seeded alike, on every call
    ]
    return make_grid(ctx.run.to_display(torch.cat(rows)), CLASS_COLUMNS)


def samples(ctx: PictureContext, n: int = 64) -> np.ndarray:
    """Prior samples as E[x|z]: each a smooth picture of what z encodes."""
    return _prior_samples(ctx, n, draw=False)


def drawn_samples(ctx: PictureContext, n: int = 64) -> np.ndarray:
    """The same prior draws of z, each image drawn from p(x|z): what the model generates."""
    return _prior_samples(ctx, n, draw=True)


def interpolations(ctx: PictureContext, pairs: int = 4, steps: int = 10) -> np.ndarray:
    """For each pair of test images: a row of linear, then a row of spherical interpolation."""
    means = ctx.test_means(2 * pairs)
    rows = []
    for i in range(pairs):
        z0, z1 = means[2 * i], means[2 * i + 1]
        rows += [lerp(z0, z1, steps), slerp(z0, z1, steps)]
    return make_grid(ctx.decode_to_display(torch.cat(rows)), steps)


def traversals(ctx: PictureContext, dims: int = 10, steps: int = 9, span: float = 3.0) -> np.ndarray | Figure:
    """One row per latent dimension (largest KL first), from -span to +span around z = 0; on data
    with known factors each row is labelled with the factor that dimension tells most about."""
    images = ctx.splits.test.images[:2000]
    usage = latent_usage(ctx.run.model, images, ctx.run.config.data, labels=ctx.test_labels(slice(0, len(images))))
    order = usage.order[: min(dims, ctx.run.model.latent_dim)]
    base = torch.zeros(ctx.run.model.latent_dim)
    codes = traversal(base, order, torch.linspace(-span, span, steps))
    grid = make_grid(ctx.decode_to_display(codes), steps)
    if ctx.splits.test.factors is None:
        return grid
    shares, names = factor_shares(ctx)
    labels = [f"z{int(j)}: {captured_factor(shares[:, int(j)], names)}" for j in order]
    return labelled_rows(grid, labels, f"latent traversals, {-span:g} to +{span:g}")


TSNE_POINTS = 2000
TSNE_PERPLEXITY = 30.0  # scikit-learn's default
TSNE_MIN_PERPLEXITY = 5.0  # below this (under 16 points) the panel is left out


def latent_space_map(ctx: PictureContext, max_points: int = 5000) -> Figure:
    """Test-set latent means in 2-D: PCA (or the latent itself when Z = 2), and t-SNE when
    scikit-learn is installed."""
    means = ctx.test_means(max_points)
    labels = ctx.splits.test.labels[: len(means)] if ctx.splits.test.labels is not None else None
    title = "latent means (z1, z2)" if ctx.run.model.latent_dim == 2 else "latent means, PCA"
    panels = [(title, latent_plane(means).project(means).numpy())]
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        pass
    else:
        shown = means[:TSNE_POINTS].numpy()
        # t-SNE needs more points than 3 x its perplexity; a small test split gets a smaller one.
        perplexity = min(TSNE_PERPLEXITY, (len(shown) - 1) / 3)
        if perplexity >= TSNE_MIN_PERPLEXITY:
            tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=ctx.seed)
            panels.append((f"latent means, t-SNE ({len(shown):,} points)", tsne.fit_transform(shown)))
    names = ctx.splits.class_names
    return latent_map(panels, None if labels is None else labels[: len(panels[0][1])], names)


def manifold(ctx: PictureContext, side: int = 15) -> np.ndarray:
    """Decoded grid over the 2-D latent, or over the top two PCA directions of the latent means."""
    plane = latent_plane(ctx.test_means(5000))
    codes = manifold_codes(plane.centre, plane.axes, plane.scales, side)
    return make_grid(ctx.decode_to_display(codes), side, padding=0)


def curves(ctx: PictureContext) -> Figure:
    path = ctx.run.path / "metrics.jsonl"
    if not path.is_file():
        raise VaekitError(f"{path} not found: training curves need a run folder, not a checkpoint file")
    rows = read_json_lines(path)
    return training_curves(rows)


ANOMALIES_SHOWN = 8
SCORED_ITEMS = 2000  # test items scored for the histogram and the anomalies (-ELBO is cheap)


def _test_scores(ctx: PictureContext) -> tuple[np.ndarray, str]:
    """The score the one-class measurements favour per test item, the first SCORED_ITEMS, as
    `vaekit score` computes it, and its name: the excess for a Bernoulli, else -ELBO (nats)."""
    if not has_elbo(ctx.run.config.objective.name):
        raise VaekitError(
            "the score pictures rank items by their -ELBO, which a WAE run (deterministic encoder) has not"
        )
    items = ctx.splits.test.array[:SCORED_ITEMS]
    labels = ctx.test_labels(slice(0, len(items)))
    name = "excess" if has_excess(ctx.run.model) else "nelbo"
    scores = score_by(name, ctx.run.model, items, ctx.run.config.data, k=1, seed=0, labels=labels)
    return scores, "-ELBO - H(x)" if name == "excess" else "-ELBO"


def score_distribution(ctx: PictureContext) -> Figure:
    word = item_word(ctx.run.config.data)
    scores, name = _test_scores(ctx)
    return score_histogram(scores, f"{name} per test {word} (nats/{word}); higher is less typical")


def anomalies(ctx: PictureContext) -> np.ndarray:
    """The least typical test items (by `_test_scores`): a row of them, their reconstructions, and the
    per-pixel squared error (white: large)."""
    worst = np.argsort(_test_scores(ctx)[0])[::-1][:ANOMALIES_SHOWN].copy()
    x = ctx.run.prepare(ctx.splits.test.array[worst], ctx.generator)
    recon = ctx.run.model.reconstruct(x, ctx.on_device(ctx.test_labels(worst)))
    shown, rebuilt = ctx.run.to_display(x), ctx.run.to_display(recon)
    error = (shown - rebuilt).pow(2).mean(1, keepdim=True)  # (N, 1, H, W)
    error = (error / error.flatten(1).amax(1).clamp(min=1e-12)[:, None, None, None]).expand_as(shown)
    return make_grid(torch.cat([shown, rebuilt, error]), len(worst))


CAPTURE_FLOOR = 0.1  # a dimension holding less than a tenth of every factor's entropy captures none


def captured_factor(shares: np.ndarray, names: tuple[str, ...], floor: float = CAPTURE_FLOOR) -> str:
    """The factor one latent dimension tells most about, given its shares (F,) of each factor's entropy."""
    best = int(np.argmax(shares))
    if shares[best] < floor:
        return f"no factor (best {names[best]} {shares[best]:.2f})"
    return f"{names[best]} ({shares[best]:.2f})"


def factor_shares(ctx: PictureContext) -> tuple[np.ndarray, tuple[str, ...]]:
    """The test set's (F, Z) information shares and the factors' names (data with factors only)."""
    factors = ctx.splits.test.factors
    if factors is None:
        raise VaekitError("the factors picture needs data with known factors (dsprites, an npz with `factors`)")
    names = ctx.splits.factor_names or tuple(f"factor_{k}" for k in range(factors.shape[1]))
    return information_shares(ctx.test_means().numpy(), factors), names


def factor_information(ctx: PictureContext) -> Figure:
    """How much each latent dimension says about each known factor (data with factors only)."""
    return factor_heatmap(*factor_shares(ctx))


MARGINAL_ROWS = 5000  # rows drawn from the model for the marginals (at most; the test split's size if smaller)


def marginals(ctx: PictureContext) -> Figure:
    """A table's columns: the training split's observed cells beside rows drawn from the model, x ~ p(x|z)."""
    from vaekit.rows import sample_rows

    schema, run = ctx.run.schema, ctx.run
    train = ctx.splits.train.array.reshape(len(ctx.splits.train), -1)
    decoded = schema.decode(np.nan_to_num(train))  # empty cells masked out just below
    real = {
        name: decoded[name][~np.isnan(train[:, span]).any(axis=1)]
        for name, span in zip(schema.names, schema.slices, strict=True)
    }
    drawn, _ = sample_rows(run, min(MARGINAL_ROWS, max(len(train), 500)), ctx.seed, draw=True)
    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    return column_marginals(real, drawn, kinds, "drawn from the model")


PICTURES: dict[str, Callable[[PictureContext], np.ndarray | Figure]] = {
    "reconstructions": reconstructions,
    "samples": samples,
    "samples-drawn": drawn_samples,
    "interpolations": interpolations,
    "traversals": traversals,
    "latent-map": latent_space_map,
    "manifold": manifold,
    "curves": curves,
    "scores": score_distribution,
    "anomalies": anomalies,
    "factors": factor_information,
    "marginals": marginals,
}


# Pictures of the latent space itself: a model without one (--latent-dim 0) has none of them.
LATENT_PICTURES = ("interpolations", "traversals", "latent-map", "manifold", "factors")


# Pictures that rank items by their -ELBO: a run without one (a WAE) has none of them.
SCORE_PICTURES = ("scores", "anomalies")


# What a table's run can show: its rows are not images, so no grids of them.
TABLE_PICTURES = ("curves", "latent-map", "scores", "marginals")
TABLE_ONLY = ("marginals",)  # and what only a table's run shows


# Pictures that draw from the prior: a VQ-VAE has them once its prior over codes is trained.
SAMPLE_PICTURES = ("samples", "samples-drawn")


# Pictures that move through a continuous latent space around z = 0: a VQ-VAE's codes are discrete.
CONTINUOUS_PICTURES = ("traversals", "manifold")


def drawable(ctx: PictureContext, names: list[str]) -> list[str]:
    """The pictures of `names` this run has (all of them, but the latent ones for --latent-dim 0,
    the image ones for a table, samples of a VQ-VAE without a trained prior, and walks through a
    continuous latent space for a VQ-VAE's discrete codes)."""
    model = ctx.run.model
    discrete = "discrete_codes" in ctx.run.config.posterior.spec.offers
    return [
        name
        for name in names
        if (model.latent_dim > 0 or name not in LATENT_PICTURES)
        and (not ctx.splits.is_table or name in TABLE_PICTURES)
        and (ctx.splits.is_table or name not in TABLE_ONLY)
        and (name != "factors" or ctx.splits.test.factors is not None)
        and (name not in SCORE_PICTURES or has_elbo(ctx.run.config.objective.name))
        and (name not in SAMPLE_PICTURES or model.can_sample)
        and (not discrete or name not in CONTINUOUS_PICTURES)
    ]


def draw(ctx: PictureContext, what: str, path: Path) -> Path:
    """Write the picture `what` of this run to `path` (a PNG)."""
    drawn = picture(ctx, what)
    if isinstance(drawn, Figure):
        save_figure(drawn, path)
    else:
        save_png(path, drawn, scale=2)
    return path


def picture(ctx: PictureContext, what: str) -> np.ndarray | Figure:
    """The picture `what` of this run: an (H, W, C) uint8 grid or a matplotlib Figure; a picture
    the run cannot have is refused with the reason."""
    if what not in PICTURES:
        raise VaekitError(f"there is no picture {what!r}: choose from {', '.join(PICTURES)}")
    if what not in drawable(ctx, [what]):
        if what == "factors":
            raise VaekitError("the factors picture needs data with known factors (dsprites, an npz with `factors`)")
        if what in TABLE_ONLY:
            raise VaekitError(f"{what} compares a table's columns, and this run's data is images")
        if ctx.splits.is_table:
            raise VaekitError(
                f"{what} shows images, and this run's data is a table: plot {' or '.join(TABLE_PICTURES)}"
            )
        if what in SAMPLE_PICTURES:
            raise VaekitError(ctx.run.model.cannot_sample_because)
        if what in CONTINUOUS_PICTURES and ctx.run.model.latent_dim > 0:
            raise VaekitError(f"{what} walks through a continuous latent space; this run's codes are discrete")
        raise VaekitError(f"{what} pictures the latent space, and this model has none (--latent-dim 0)")
    return PICTURES[what](ctx)
