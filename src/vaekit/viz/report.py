"""`vaekit report`: one self-contained HTML file (pictures embedded as data URIs, no scripts,
no network) with the config, the evaluation table, the training curves and every picture."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vaekit.atomic import read_json, write_text
from vaekit.config import RunConfig
from vaekit.metrics.evaluation import collapse_warning, format_table

PICTURE_TITLES = {
    "curves": "Training curves",
    "reconstructions": "Reconstructions (each row of test images over its reconstructions)",
    "samples": "Samples from the prior: E[x|z] for z drawn from the prior",
    "samples-drawn": "Samples from the prior, drawn: x ~ p(x|z) for the same z (what the model generates)",
    "interpolations": "Interpolations between test images (per pair: linear row, then spherical row)",
    "traversals": "Latent traversals (one row per dimension, largest KL first; -3 to +3; on data with known "
    "factors each row names the factor it tells most about, with its share of that factor's entropy)",
    "latent-map": "Latent space of the test set",
    "manifold": "Decoded manifold (2-D latent, or the top two principal directions)",
    "scores": "Anomaly scores: -ELBO of test items (vaekit score gives them per item, with a threshold)",
    "anomalies": "The least typical test items (highest -ELBO): the items, their reconstructions, the per-pixel error",
    "factors": "What each latent dimension says about each known factor: I(factor; z_j) / H(factor) on the test set",
    "marginals": "A table's columns: the training rows' observed cells beside rows drawn from the model (x ~ p(x|z))",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; font-size: 0.9rem; }
th { background: #f4f4f4; } pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; image-rendering: pixelated; }
.warning { background: #fff3cd; padding: 0.5rem 0.8rem; border-left: 4px solid #e0a800; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _config_rows(config: RunConfig) -> str:
    rows = []
    for section, values in config.to_dict().items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            rows.append(f"<tr><td>{section}</td><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>")
    return "\n".join(rows)


def build_report(run_dir: Path, config: RunConfig, evaluation: dict[str, Any], pictures: dict[str, Path]) -> str:
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.is_file() else {}
    warning = collapse_warning(evaluation)
    sections = []
    for name, title in PICTURE_TITLES.items():
        if name in pictures:
            sections.append(
                f'<figure id="{name}"><figcaption><h3>{html.escape(title)}</h3></figcaption>'
                f'<img alt="{html.escape(title)}" src="{_data_uri(pictures[name])}"></figure>'
            )
    training = ""
    if summary:
        training = (
            f"<p>Trained for {config.train.epochs} epochs in {summary.get('wall_seconds', 0):.0f} s on "
            f"{html.escape(str(summary.get('device', '?')))}; kept epoch {summary.get('best_epoch')}: "
            f"{html.escape(str(summary.get('kept', 'the epoch with the lowest validation -ELBO')))}.</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vaekit report: {html.escape(run_dir.name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>vaekit report: {html.escape(run_dir.name)}</h1>
<p>Preset <b>{html.escape(str(config.preset))}</b> on <b>{html.escape(config.data.dataset)}</b>,
{config.model.architecture} model, latent size {config.model.latent_dim}, {config.likelihood.name} likelihood.</p>
{training}
<h2>Evaluation</h2>
{f'<p class="warning">{html.escape(warning)}</p>' if warning else ""}
<pre id="evaluation">{html.escape(format_table(evaluation))}</pre>
<p>Figures: {html.escape(evaluation.get("figure_description") or "negative ELBO and -log p(x) in nats per image")}.
Bits per dimension are given only where the figure is a likelihood of the data's own values.
The Frechet distance uses the features of a small classifier vaekit trains on this dataset's labels:
it compares models on this dataset, and is not the Inception FID.</p>
<h2>Pictures</h2>
{"".join(sections)}
<h2>Configuration</h2>
<table><tr><th>section</th><th>setting</th><th>value</th></tr>
{_config_rows(config)}
</table>
</body></html>
"""


def write_report(path: Path, text: str) -> Path:
    write_text(path, text)
    return path
