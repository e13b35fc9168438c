"""VQ-VAEs on 8-bit Fashion-MNIST (track c): the bound in bits/dim, the rate-distortion table at
equal rate against the Gaussian VAE swept over beta, and the sample quality of prior samples.

The runs are the study benchmarks/studies/vq_fashion.toml (its comments say what each run is),
trained, given their priors over codes and evaluated by `vaekit sweep` (resumable, any number of
workers); this script reads the finished runs into benchmarks/vq_fashion.json and prints the
table with each VQ-VAE's distortion beside the Gaussian VAE's at the same rate:

    vaekit sweep benchmarks/studies/vq_fashion.toml --out studies/vq-fashion --workers 2
    python benchmarks/vq_fashion.py studies/vq-fashion    # record the finished runs, print the table
    python benchmarks/vq_fashion.py --table                # the table of what is recorded
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from vaekit.atomic import read_json, read_json_lines, write_json

HERE = Path(__file__).resolve().parent


def figures(folder: Path) -> dict[str, Any]:
    """One finished run's test figures: the bound's parts (a VQ-VAE's under its learned prior),
    bits/dim, the codebook's use and the sample quality where they were measured."""
    result = read_json(folder / "eval.json")
    epochs = read_json_lines(folder / "metrics.jsonl")
    entry = {
        "nelbo_nats": result["elbo_nelbo_nats"],
        "distortion_nats": result["elbo_recon_nats"],
        "rate_nats": result["elbo_kl_nats"],
        "elbo_bits_per_dim": result.get("elbo_bits_per_dim"),
        "iwae_nats": result.get("iwae_nll_nats"),
        "iwae_k": result.get("iwae_k"),
        "iwae_bits_per_dim": result.get("iwae_bits_per_dim"),
        "training_seconds": sum(row.get("epoch_seconds", 0.0) for row in epochs),
        "epochs": len(epochs),
        "codebook": result.get("codebook"),
        "quality": result.get("quality"),
    }
    prior = folder / "prior_metrics.jsonl"
    if prior.is_file():
        entry["prior_seconds"] = read_json_lines(prior)[-1]["seconds"]
    return entry


def record(study: Path, out: Path) -> dict[str, Any]:
    """Every finished, evaluated run of the study folder into `out` (kept entries of runs not
    finished here stay)."""
    from suite import machine  # benchmarks/suite.py: the CPU, cores, torch and its threads

    results = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    for folder in sorted((study / "runs").iterdir()):
        if (folder / "eval.json").is_file() and (folder / "summary.json").is_file():
            results["runs"][folder.name] = {**figures(folder), "machine": machine()}
    write_json(out, results)
    return results


def interpolate(points: list[tuple[float, float]], rate: float) -> float | None:
    """The distortion of the piecewise-linear curve through (rate, distortion) points at `rate`,
    or None outside the points' range (no extrapolation)."""
    points = sorted(points)
    for (r0, d0), (r1, d1) in itertools.pairwise(points):
        if r0 <= rate <= r1:
            return d0 + (d1 - d0) * (rate - r0) / (r1 - r0) if r1 > r0 else d0
    return None


def render(results: dict[str, Any]) -> str:
    runs = results["runs"]
    gaussian = [(r["rate_nats"], r["distortion_nats"]) for name, r in runs.items() if name.startswith("gauss")]
    header = "| run | rate (nats/image) | distortion (nats/image) | bound (bits/dim) | Gaussian distortion, same rate |"
    lines = [header, "| --- | --- | --- | --- | --- |"]
    for name, r in sorted(runs.items(), key=lambda item: item[1]["rate_nats"]):
        at_rate = interpolate(gaussian, r["rate_nats"]) if name.startswith("vq") else None
        cell = "" if not name.startswith("vq") else ("outside the sweep" if at_rate is None else f"{at_rate:.1f}")
        lines.append(
            f"| `{name}` | {r['rate_nats']:.1f} | {r['distortion_nats']:.1f} | {r['elbo_bits_per_dim']:.3f} | {cell} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, nargs="?", help="the study folder `vaekit sweep` wrote")
    parser.add_argument("--out", type=Path, default=HERE / "vq_fashion.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of what is recorded")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.table or args.study is None:
        print(render(json.loads(args.out.read_text())))
        return
    print(render(record(args.study, args.out)))


if __name__ == "__main__":
    main()
