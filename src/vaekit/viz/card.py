"""A trained run as a notebook shows it: one line of text (`repr`) and a small HTML card (what the
model is, its test figures with their units, its last pictures inline, or a table's drawn rows).

The card reads only what the run folder already holds (summary.json, eval.json, the pictures
training wrote), so that displaying a run is instant; a table's rows are drawn from the model.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit.atomic import read_json

if TYPE_CHECKING:
    from vaekit.loading import TrainedRun

CARD_ROWS = 5  # rows drawn for a table's card
CARD_STYLE = (
    "font-family: system-ui, sans-serif; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.9rem; "
    "max-width: 760px"
)


def _what(run: TrainedRun) -> str:
    config = run.config
    parts = [
        f"{config.model.architecture} network",
        f"latent size {config.model.latent_dim}",
        f"{run.model.likelihood.title} likelihood",
        f"objective {config.objective.name}",
    ]
    if config.posterior.name != "gaussian":
        parts.append(f"posterior {config.posterior.name}")
    if config.prior.name != "standard":
        parts.append(f"prior {config.prior.name}")
    return ", ".join(parts)


def _data(run: TrainedRun) -> str:
    dataset = run.config.data.dataset
    return Path(dataset).name if ("/" in dataset or "\\" in dataset) else dataset


def run_line(run: TrainedRun) -> str:
    """One line: the folder, the preset, the model and the test figure with its unit."""
    summary = run.summary
    figure = (
        f", test -ELBO {summary['test_nelbo_nats']:.2f} {summary.get('units', 'nats per item')}"
        if "test_nelbo_nats" in summary
        else ", not finished"
    )
    preset = "" if run.config.preset is None else f"preset {run.config.preset}, "
    return f"{str(run.run_dir)!r}: {preset}{_what(run)}, data {_data(run)}{figure}"


def iwae_bound(evaluation: dict[str, Any]) -> tuple[str, float] | None:
    """eval.json's IWAE figure as (what it is, its value in nats): `nll` for a likelihood, else
    what the figure is (`cross entropy`, ...); None before the run was evaluated."""
    keys = [key for key in evaluation if key.startswith("iwae_") and key.endswith("_nats") and "error" not in key]
    if not keys:
        return None
    return keys[0].removeprefix("iwae_").removesuffix("_nats").replace("_", " "), float(evaluation[keys[0]])


def _figure_rows(run: TrainedRun) -> list[tuple[str, str]]:
    summary, unit = run.summary, run.summary.get("units", "nats per item")
    rows = []
    if "test_nelbo_nats" in summary:
        rows.append(("test -ELBO", f"{summary['test_nelbo_nats']:.2f} {unit}"))
        rows.append(("  reconstruction term", f"{summary['test_recon_nats']:.2f} {unit}"))
        rows.append(("  KL term", f"{summary['test_kl_nats']:.2f} {unit}"))
    evaluation_file = run.run_dir / "eval.json"
    if evaluation_file.is_file():
        evaluation = read_json(evaluation_file)
        bound = iwae_bound(evaluation)
        if bound is not None:
            rows.append((f"IWAE {bound[0]}, K={evaluation.get('iwae_k')}", f"{bound[1]:.2f} {unit}"))
        if "iwae_bits_per_dim" in evaluation:
            rows.append(("  in bits per dimension", f"{evaluation['iwae_bits_per_dim']:.4f}"))
    if "best_epoch" in summary:
        rows.append(("kept", f"epoch {summary['best_epoch']} ({summary.get('kept', '')})"))
    if "wall_seconds" in summary:
        rows.append(("trained", f"{summary['wall_seconds']:.0f} s on {summary.get('device', '?')}"))
    return rows


def _image_tag(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure style="display:inline-block;margin:0 1rem 0 0"><figcaption>{html.escape(title)}</figcaption>'
        f'<img src="data:image/png;base64,{data}" style="image-rendering:pixelated;max-width:360px"></figure>'
    )


def _pictures(run: TrainedRun) -> str:
    if run.is_table:
        try:
            rows: Any = run.sample_rows(CARD_ROWS, seed=0)
        except Exception as error:  # a card must show even when drawing fails; it says why
            return f"<p>rows could not be drawn: {html.escape(str(error))}</p>"
        return f"<p>{CARD_ROWS} rows drawn from the model:</p>{rows.to_html(index=False, float_format='%.3g')}"
    latest = last_pictures(run.run_dir / "images")
    shown = [
        (latest.get("recon"), "reconstructions (originals above)"),
        (latest.get("samples_prior", latest.get("samples")), "samples from the prior"),
    ]
    tags = [_image_tag(path, title) for path, title in shown if path is not None]
    return "".join(tags) if tags else "<p>no pictures yet (training writes them at each epoch's end)</p>"


def run_card(run: TrainedRun) -> str:
    """The HTML card a notebook shows for `run`."""
    rows = "".join(
        f"<tr><td style='text-align:left'>{html.escape(name)}</td><td style='text-align:left'>{html.escape(value)}"
        "</td></tr>"
        for name, value in _figure_rows(run)
    )
    description = run.summary.get("figure_description", "")
    unfinished = "" if run.summary else "<p>training has not finished: no test figures yet</p>"
    table = f"<table>{rows}</table>" if rows else ""
    figures = f"{unfinished}{table}<p style='font-size:0.85em;color:#555'>{html.escape(description)}</p>"
    return (
        f'<div style="{CARD_STYLE}"><b>vaekit run</b> <code>{html.escape(str(run.run_dir))}</code>'
        f"<p>{'' if run.config.preset is None else f'preset <b>{html.escape(run.config.preset)}</b> '}"
        f"on <b>{html.escape(_data(run))}</b>: "
        f"{html.escape(_what(run))}</p>{figures}{_pictures(run)}</div>"
    )


def last_pictures(folder: Path) -> dict[str, Path]:
    """The run's last pictures by name: each kind's latest epoch, and the prior's samples."""
    latest: dict[str, Path] = {}
    for path in sorted(folder.glob("*.png")):
        name, _, epoch = path.stem.partition("_epoch")
        if not epoch or epoch.isdigit():
            latest[name] = path  # sorted: the last epoch wins
    return latest
