"""Matplotlib figures from plain arrays (no pyplot global state: each call builds its own Figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vaekit.atomic import write_with


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> None:
    write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=dpi, bbox_inches="tight"))


def latent_map(
    panels: Sequence[tuple[str, np.ndarray]], labels: np.ndarray | None, class_names: Sequence[str] | None
) -> Figure:
    """One scatter panel per (title, points (N, 2)), coloured by label when there are labels."""
    figure = Figure(figsize=(6.0 * len(panels), 5.5))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, points) in zip(axes, panels, strict=True):
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5, color="tab:blue")
        else:
            cmap = "tab10" if labels.max() < 10 else "tab20"
            # a panel may show fewer points than the first (t-SNE takes the first TSNE_POINTS)
            scatter = ax.scatter(points[:, 0], points[:, 1], c=labels[: len(points)], s=3, alpha=0.6, cmap=cmap)
            if class_names is not None:
                handles = [
                    ax.scatter([], [], color=scatter.cmap(scatter.norm(i)), s=20, label=name)
                    for i, name in enumerate(class_names)
                ]
                ax.legend(handles=handles, fontsize=7, markerscale=1.0, loc="best", framealpha=0.8)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def training_curves(rows: Sequence[dict[str, Any]]) -> Figure:
    """Loss, reconstruction, KL and beta per epoch, from metrics.jsonl rows."""
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10.0, 7.0))
    axes = figure.subplots(2, 2)
    panels = [
        (axes[0, 0], "objective (nats/image)", [("train loss", "train_loss_nats"), ("val -ELBO", "val_nelbo_nats")]),
        (
            axes[0, 1],
            "reconstruction term (nats/image)",
            [("train", "train_recon_nats"), ("val", "val_recon_nats")],
        ),
        (axes[1, 0], "KL(q(z|x) || p(z)) (nats/image)", [("train", "train_kl_nats"), ("val", "val_kl_nats")]),
        (axes[1, 1], "beta (KL weight)", [("beta", "beta")]),
    ]
    for ax, title, series in panels:
        for label, key in series:
            if key in rows[0]:  # no val_* keys in a run without a validation set
                ax.plot(epochs, [row[key] for row in rows], marker="o", markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def factor_heatmap(information: np.ndarray, factor_names: Sequence[str]) -> Figure:
    """The mutual information of each factor (rows) with each latent dimension (columns), as a
    share of the factor's entropy: (F, Z) in [0, 1]."""
    factors, latents = information.shape
    figure = Figure(figsize=(max(4.0, 0.55 * latents + 2.0), max(2.5, 0.5 * factors + 1.2)))
    ax = figure.subplots()
    image = ax.imshow(information, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (row, col), value in np.ndenumerate(information):
        ax.text(
            col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
        )
    ax.set_xticks(range(latents), [f"z{j}" for j in range(latents)], fontsize=8)
    ax.set_yticks(range(factors), list(factor_names), fontsize=8)
    ax.set_title("I(factor; z_j) / H(factor), test set (20 bins per latent)", fontsize=10)
    figure.colorbar(image, ax=ax, fraction=0.04)
    figure.tight_layout()
    return figure


def labelled_rows(grid: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """A picture grid (H, W, C) uint8 of len(labels) equal rows, each row named on its left."""
    height, width = grid.shape[:2]
    rows = len(labels)
    figure = Figure(figsize=(width / 60 + 2.6, height / 60 + 0.5), dpi=100)
    ax = figure.subplots()
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([(row + 0.5) * height / rows for row in range(rows)], list(labels), fontsize=8)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)
    figure.tight_layout()
    return figure


def score_histogram(scores: np.ndarray, label: str, threshold: float | None = None) -> Figure:
    """Histogram of per-item anomaly scores (higher: less typical), with an optional threshold."""
    figure = Figure(figsize=(7.0, 3.5))
    ax = figure.subplots()
    ax.hist(scores, bins=60, color="#4c72b0")
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:.4g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("items")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


MARGINAL_COLUMNS = 4  # panels per row
MARGINAL_CATEGORIES = 12  # a category column's most frequent values shown


def column_marginals(
    real: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray], kinds: Mapping[str, str], what: str
) -> Figure:
    """Each column's distribution in the real rows beside the model's (`what` names them):
    overlaid histograms for numbers, paired bars of frequencies for categories and booleans.
    `real` holds each column's observed cells only."""
    names = list(kinds)
    rows = -(-len(names) // MARGINAL_COLUMNS)
    figure = Figure(figsize=(3.2 * min(len(names), MARGINAL_COLUMNS), 2.6 * rows))
    axes = np.atleast_1d(figure.subplots(rows, min(len(names), MARGINAL_COLUMNS))).ravel()
    for ax, name in zip(axes, names, strict=False):
        mine, theirs = real[name], synthetic[name]
        if kinds[name] in ("categorical", "boolean"):
            values, counts = np.unique(np.asarray(mine, dtype=str), return_counts=True)
            shown = values[np.argsort(-counts)][:MARGINAL_CATEGORIES]
            share = [np.mean(np.asarray(mine, dtype=str) == v) for v in shown]
            drawn = [np.mean(np.asarray(theirs, dtype=str) == v) for v in shown]
            at = np.arange(len(shown))
            ax.bar(at - 0.2, share, 0.4, color="#4c72b0", label="training data")
            ax.bar(at + 0.2, drawn, 0.4, color="#dd8452", label=what)
            ax.set_xticks(at, [str(v)[:10] for v in shown], rotation=45, ha="right", fontsize=7)
            ax.set_ylabel("share of rows", fontsize=8)
        else:
            both = np.concatenate([np.asarray(mine, float), np.asarray(theirs, float)])
            bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=30)
            ax.hist(np.asarray(mine, float), bins=bins, density=True, alpha=0.6, color="#4c72b0", label="training data")
            ax.hist(np.asarray(theirs, float), bins=bins, density=True, alpha=0.6, color="#dd8452", label=what)
            ax.tick_params(labelsize=7)
        ax.set_title(f"{name} ({kinds[name]})", fontsize=9)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
