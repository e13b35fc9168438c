"""`vaekit compare`: runs side by side, from run folders and study folders.

One row per run, or, where runs differ only by their seed, one row per setting with each figure's
mean ± standard deviation over the seeds. The settings shown are those that differ between the
runs; the figures are the test split's (summary.json), each with its unit in its name, and a run's
figure kind (a likelihood, a cross-entropy, a density, ...) is part of what groups it, so figures
of different kinds are shown side by side with their labels and never averaged together.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaekit.atomic import read_json, read_json_lines, write_bytes, write_text
from vaekit.errors import VaekitError

SEED = "train.seed"
LEGEND_MAX = 20  # more entries than this and a legend hides the plot (and takes seconds to draw)
# config.json keys that are not settings a user chose (fitted from the data, or vaekit's own)
NOT_SETTINGS = {"data.feature_mean", "data.feature_std", "data.feature_names", "model.classes", "model.class_names"}
NOT_SETTINGS |= {"data.column_kinds", "data.column_categories", "data.column_bounds"}


@dataclass(frozen=True)
class ComparedRun:
    """One finished run: where it is, its settings flattened to "section.name", its test figures,
    their kind, and its per-epoch validation curve."""

    path: Path
    settings: dict[str, Any]
    figures: dict[str, float]
    kind: str
    curve: list[tuple[int, float]] = field(default_factory=list)


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {"preset": config.get("preset")}
    for section, values in config.items():
        if isinstance(values, dict):
            for name, value in values.items():
                key = f"{section}.{name}"
                if key not in NOT_SETTINGS:
                    flat[key] = tuple(value) if isinstance(value, list) else value
    return flat


def _figures(summary: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in summary.items()
        if key.startswith("test_") and key.endswith(("_nats", "_bits_per_dim")) and isinstance(value, (int, float))
    }


# eval.json's entries that describe the evaluation rather than measure the model
EVAL_NOT_FIGURES = {"images", "first_images", "seed", "checkpoint_epoch", "iwae_k", "latent_dim", "seconds", "units"}
EVAL_NOT_FIGURES |= {"bottom_latent_dim", "items", "batch_size", "dci_train_items", "anomalies", "empty_cells"}


def _eval_figures(evaluation: dict[str, Any], prefix: str = "eval.") -> dict[str, float]:
    """`vaekit evaluate`'s numbers (eval.json), nested sections flattened to eval.SECTION.NAME:
    the IWAE bound, active units, sample quality, the disentanglement metrics, ..."""
    found: dict[str, float] = {}
    for key, value in evaluation.items():
        if key in EVAL_NOT_FIGURES:
            continue
        if isinstance(value, dict):
            found.update(_eval_figures(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{prefix}{key}"] = float(value)
    return found


def read_run(path: Path) -> ComparedRun:
    summary_path = path / "summary.json"
    if not summary_path.exists():
        raise VaekitError(f"{path} is not a finished run (no summary.json): finish it, or leave it out")
    summary = read_json(summary_path, "a run's summary")
    config = read_json(path / "config.json", "a run's config")
    curve = (
        [
            (int(line["epoch"]), float(line["val_nelbo_nats"]))
            for line in read_json_lines(path / "metrics.jsonl")
            if isinstance(line, dict) and isinstance(line.get("val_nelbo_nats"), (int, float)) and "epoch" in line
        ]
        if (path / "metrics.jsonl").exists()
        else []
    )
    figures = _figures(summary)
    if (path / "eval.json").exists():  # vaekit evaluate's figures too, where it was run
        figures.update(_eval_figures(read_json(path / "eval.json", "a run's evaluation")))
    return ComparedRun(path, _flatten(config), figures, str(summary.get("test_figure", "likelihood")), curve)


def _runs_of(path: Path) -> list[Path]:
    """A run folder itself, or a study folder's finished runs in the study's order."""
    if (path / "summary.json").exists():
        return [path]
    index = path / "study.json"
    if index.exists():
        names = [run["name"] for run in read_json(index, "a study's index")["runs"]]
        return [path / "runs" / name for name in names if (path / "runs" / name / "summary.json").exists()]
    if (path / "study.toml").exists():
        return sorted(p.parent for p in (path / "runs").glob("*/summary.json"))
    raise VaekitError(f"{path} is neither a finished run folder nor a study folder: give run or study folders")


@dataclass(frozen=True)
class Comparison:
    """The table: `columns` in order, `rows` as dicts (a figure's mean under its key, its standard
    deviation under KEY_std where runs were grouped over seeds), and the runs it was made from."""

    columns: list[str]
    rows: list[dict[str, Any]]
    runs: list[ComparedRun]
    grouped: bool

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self._all_columns())

    def _all_columns(self) -> list[str]:
        extra = [f"{c}_std" for c in self.columns if self.grouped and any(f"{c}_std" in row for row in self.rows)]
        return [*self.columns, *extra]

    def _cell(self, row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if isinstance(value, float) and column.startswith(("test_", "eval.")):  # a figure; a setting as given
            std = row.get(f"{column}_std")
            precise = not column.endswith("_nats")  # nats to the hundredth; scores, bits/dim to 4 places
            shown = f"{value:.4f}" if precise else f"{value:.2f}"
            if std is not None and not math.isnan(std):
                shown += f" ± {std:.4f}" if precise else f" ± {std:.2f}"
            return shown
        return "" if value is None else str(value)

    def _repr_html_(self) -> str:
        """A notebook shows the table as its cells read (a figure with its spread over seeds)."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._cell(row, c))}</td>" for c in self.columns) + "</tr>"
            for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "| " + " | ".join("---" for _ in self.columns) + " |"]
        lines += ["| " + " | ".join(self._cell(row, c) for c in self.columns) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._all_columns(), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def compare(paths: Sequence[str | Path]) -> Comparison:
    """Every finished run of `paths` (run folders, study folders) in one table."""
    runs = [read_run(run) for path in paths for run in _runs_of(Path(path))]
    if not runs:
        raise VaekitError("no finished runs to compare: give run folders or study folders with finished runs")
    keys = sorted({key for run in runs for key in run.settings})
    differ = [k for k in keys if len({repr(run.settings.get(k)) for run in runs}) > 1]
    shown = [k for k in differ if k != SEED]
    groups: dict[tuple[Any, ...], list[ComparedRun]] = {}
    for run in runs:
        groups.setdefault((*(repr(run.settings.get(k)) for k in shown), run.kind), []).append(run)
    grouped = any(len(members) > 1 for members in groups.values())
    figures = _figure_order(runs)
    if not grouped:
        columns = ["run", *differ, "figure", *figures]
        rows = [
            {"run": run.path.name, **{k: run.settings.get(k) for k in differ}, "figure": run.kind, **run.figures}
            for run in runs
        ]
        return Comparison(columns, rows, runs, False)
    columns = [*shown, "runs", "figure", *figures]
    rows = []
    for members in groups.values():
        row: dict[str, Any] = {k: members[0].settings.get(k) for k in shown}
        row.update({"runs": len(members), "figure": members[0].kind})
        for figure in figures:
            values = [m.figures[figure] for m in members if figure in m.figures]
            if values:
                row[figure] = statistics.fmean(values)
                row[f"{figure}_std"] = statistics.stdev(values) if len(values) > 1 else float("nan")
        rows.append(row)
    return Comparison(columns, rows, runs, True)


def _figure_order(runs: list[ComparedRun]) -> list[str]:
    preferred = ["test_nelbo_nats", "test_recon_nats", "test_kl_nats", "test_bits_per_dim"]
    found = {key for run in runs for key in run.figures}
    return [k for k in preferred if k in found] + sorted(found - set(preferred))


def _label(run: ComparedRun, shown: list[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={run.settings.get(k)}" for k in shown) or run.path.name


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(comparison: Comparison) -> dict[str, str]:
    """The pictures, as base64 PNGs: the rate-distortion plane (one point per run), each figure
    over seeds per setting (a strip plot), and the validation curves overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in comparison.columns if "." in c and c != SEED]
    labels = [_label(run, shown) for run in comparison.runs]
    order = list(dict.fromkeys(labels))
    pictures: dict[str, str] = {}
    rated = [
        (run, label)
        for run, label in zip(comparison.runs, labels, strict=True)
        if {"test_kl_nats", "test_recon_nats"} <= set(run.figures)
    ]
    if rated:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for label in order:
            points = [(r.figures["test_kl_nats"], r.figures["test_recon_nats"]) for r, lab in rated if lab == label]
            if points:
                rates, distortions = zip(*points, strict=True)
                ax.scatter(rates, distortions, label=label, s=28)
        ax.set_xlabel("rate: KL (nats)")
        ax.set_ylabel("distortion: reconstruction term (nats)")
        ax.set_title("rate-distortion, one point per run")
        if len(order) <= LEGEND_MAX:
            ax.legend(fontsize=7)
        pictures["rate-distortion"] = _png(fig)
        plt.close(fig)
    figure = next(
        (f for f in ("test_nelbo_nats", "test_recon_nats") if all(f in r.figures for r in comparison.runs)), None
    )
    if figure is not None:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(order)), 3.6))
        for i, label in enumerate(order):
            values = [r.figures[figure] for r, lab in zip(comparison.runs, labels, strict=True) if lab == label]
            jitter = [i + 0.08 * (j - (len(values) - 1) / 2) for j in range(len(values))]
            ax.scatter(jitter, values, s=24)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"test {figure.removeprefix('test_').removesuffix('_nats')} (nats)")
        ax.set_title("each run's figure, per setting (seeds side by side)")
        pictures["strip"] = _png(fig)
        plt.close(fig)
    curves = [(run, label) for run, label in zip(comparison.runs, labels, strict=True) if run.curve]
    if curves:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for run, label in curves:
            ax.plot(*zip(*run.curve, strict=True), marker="o", markersize=3, label=f"{label} ({run.path.name})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation -ELBO (nats)")
        if len(curves) <= LEGEND_MAX:
            ax.legend(fontsize=6)
        pictures["curves"] = _png(fig)
        plt.close(fig)
    return pictures


def to_html(comparison: Comparison, pictures: dict[str, str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in comparison.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(comparison._cell(row, c))}</td>" for c in comparison.columns) + "</tr>"
        for row in comparison.rows
    )
    figures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'
        for name, data in (plots(comparison) if pictures is None else pictures).items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>vaekit compare</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem}</style></head><body>"
        f"<h1>Runs compared</h1><p>{len(comparison.runs)} runs; figures on the test split, nats per item, "
        "bits per dimension; ± is the standard deviation over seeds.</p>"
        f"<table><tr>{head}</tr>{body}</table>{figures}</body></html>"
    )


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """compare.md, compare.csv, compare.html (self-contained: its plots embedded) and each plot as
    compare-NAME.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = plots(comparison)
    texts = {
        "compare.md": comparison.to_markdown() + "\n",
        "compare.csv": comparison.to_csv(),
        "compare.html": to_html(comparison, pictures),
    }
    for name, text in texts.items():
        write_text(out / name, text)
    for name, data in pictures.items():
        write_bytes(out / f"compare-{name}.png", base64.b64decode(data))
    return [*(out / name for name in texts), *(out / f"compare-{name}.png" for name in pictures)]
