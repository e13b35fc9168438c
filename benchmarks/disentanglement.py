"""The disentanglement table: six objectives on dSprites at one budget, three seeds each.

VAE (beta 1), beta-VAE (beta 4), AnnealedVAE (controlled capacity), beta-TCVAE (beta 6), FactorVAE
(gamma 40) and DIP-VAE-II, each trained with the same network (vaekit's 4096-400-10 MLP,
Bernoulli likelihood, Adam 1e-3, batch 64) for the same number of steps, then scored on the 10,000
held-out test images: the test -ELBO and its reconstruction term in nats per image, and every
disentanglement metric of vaekit/metrics/disentanglement.py on the posterior means.

Why this network: at 2 CPU cores a step of it costs 38 ms (one thread), so a run of 8,000 steps
trains in about 5 minutes and the whole table fits the 3-hour budget; Chen et al. (2018)'s
1200-1200 MLP costs 156 ms and a conv net of Locatello et al. (2019)'s widths (32, 32, 64, 64,
stride 2) 142 ms (beta-TCVAE steps, one thread, AMD EPYC), which would leave each run a quarter
of the images.

The runs are the study benchmarks/studies/disentanglement.toml: `vaekit sweep` trains and scores
them (resumable at any point, any number of workers), and this script records the finished runs'
figures in benchmarks/disentanglement.json and prints the table, or compares them, figure by
figure, with an earlier record of the same seeds:

    vaekit sweep benchmarks/studies/disentanglement.toml --out studies/disentanglement --workers 2
    python benchmarks/disentanglement.py studies/disentanglement            # record, print the table
    python benchmarks/disentanglement.py studies/disentanglement --against OLD.json --out /tmp/new.json
    python benchmarks/disentanglement.py --table                             # the table of the record

Not part of the tests.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from vaekit.atomic import read_json, read_json_lines, write_json

HERE = Path(__file__).resolve().parent
BATCH = 64
PAPER_STEPS = 300_000  # Locatello et al. (2019) and the methods' papers: 300,000 steps of 64

# each run's method (its [[variants]] name in the study) and what the table calls it
METHODS = {
    "vae": "VAE (beta 1)",
    "beta-vae": "beta-VAE (beta 4)",
    "annealed": "AnnealedVAE (C_max 25, gamma 1000)",
    "betatc": "beta-TCVAE (beta 6)",
    "factorvae": "FactorVAE (gamma 40)",
    "dip-ii": "DIP-VAE-II (lambda_od 10)",
}


def training_seconds(folder: Path) -> float:
    """The optimiser's time over the run's epochs (metrics.jsonl), resumes included, evaluation not."""
    return float(
        sum(row.get("epoch_seconds", 0.0) for row in read_json_lines(folder / "metrics.jsonl") if "epoch" in row)
    )


def entry_of(folder: Path, threads: int) -> dict[str, Any]:
    """One finished, scored run of the study as the record keeps it (`threads`: the torch threads
    each run had, the machine's divided between the sweep's workers)."""
    from suite import machine  # benchmarks/suite.py: the CPU, cores, torch and its threads

    config, summary = read_json(folder / "config.json"), read_json(folder / "summary.json")
    figures = read_json(folder / "eval.json")["disentanglement"]
    steps = config["train"]["max_steps"]
    return {
        "method": folder.name.split(",seed=")[0],
        "seed": config["train"]["seed"],
        "steps": steps,
        "images_seen": steps * config["train"]["batch_size"],
        "training_seconds": training_seconds(folder),
        "machine": {**machine(), "torch_threads": threads},
        "test_nelbo_nats": summary["test_nelbo_nats"],
        "test_recon_nats": summary["test_recon_nats"],
        "test_kl_nats": summary["test_kl_nats"],
        "metrics": {
            "beta_vae_score": figures["beta_vae_score"],
            "factor_vae_score": figures["factor_vae_score"],
            "mig": {"mig": figures["mig"]},
            "sap": {"sap": figures["sap"]},
            "dci": figures["dci"],
        },
        "metric_seconds": figures["seconds"],
        "dci_train_points": figures["dci_train_items"],
    }


def record(study: Path, threads: int) -> dict[str, Any]:
    """Every finished, scored run of the study folder, keyed method/seedN."""
    runs = {}
    for folder in sorted((study / "runs").iterdir()):
        if (folder / "eval.json").is_file() and (folder / "summary.json").is_file():
            entry = entry_of(folder, threads)
            runs[f"{entry['method']}/seed{entry['seed']}"] = entry
    return {"runs": runs}


def differences(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Each run both records hold, figure by figure: equal, or how far apart."""
    lines = []
    for key in sorted(set(new["runs"]) & set(old["runs"])):
        a, b = new["runs"][key], old["runs"][key]
        for header, read in COLUMNS[:-1]:  # every figure but the training time
            x, y = read(a), read(b)
            gap = "equal" if x == y else f"{x - y:+.4g} ({(x - y) / abs(y) if y else math.inf:+.2%})"
            lines.append(f"{key:22s} {header:16s} {x:12.6g} {y:12.6g}  {gap}")
    return lines


COLUMNS = (  # (header, how to read it from a run's entry)
    ("-ELBO (nats)", lambda r: r["test_nelbo_nats"]),
    ("recon (nats)", lambda r: r["test_recon_nats"]),
    ("beta-VAE score", lambda r: r["metrics"]["beta_vae_score"]["eval_accuracy"]),
    ("FactorVAE score", lambda r: r["metrics"]["factor_vae_score"]["eval_accuracy"]),
    ("MIG", lambda r: r["metrics"]["mig"]["mig"]),
    ("SAP", lambda r: r["metrics"]["sap"]["sap"]),
    ("DCI D", lambda r: r["metrics"]["dci"]["disentanglement"]),
    ("DCI C", lambda r: r["metrics"]["dci"]["completeness"]),
    ("DCI I", lambda r: r["metrics"]["dci"]["informativeness_test"]),
    ("training (s)", lambda r: r["training_seconds"]),
)


def _cell(values: list[float], header: str) -> str:
    import numpy as np

    digits = 0 if header == "training (s)" else 1 if "nats" in header else 3
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def beats_the_vae(runs: dict[str, Any], method: str, seeds: list[int]) -> str:
    """Whether `method` is above the VAE of the same seed on MIG and on the FactorVAE score."""
    marks = []
    for seed in seeds:
        mine, vae = runs.get(f"{method}/seed{seed}"), runs.get(f"vae/seed{seed}")
        if mine is None or vae is None:
            marks.append("?")
            continue
        above = all(read(mine) > read(vae) for _, read in (COLUMNS[4], COLUMNS[3]))
        marks.append("yes" if above else "no")
    return " ".join(marks)


def render(results: dict[str, Any]) -> str:
    """The Markdown table: each method's mean ± standard deviation over its seeds, and per seed
    whether it beats the VAE of that seed on both MIG and the FactorVAE score."""
    runs = results["runs"]
    seeds = sorted({entry["seed"] for entry in runs.values()})
    header = ["method", "seeds", *(name for name, _ in COLUMNS), f"above the VAE (seeds {', '.join(map(str, seeds))})"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, title in METHODS.items():
        mine = [runs[f"{method}/seed{seed}"] for seed in seeds if f"{method}/seed{seed}" in runs]
        if not mine:
            continue
        cells = [_cell([read(r) for r in mine], name) for name, read in COLUMNS]
        verdict = "" if method == "vae" else beats_the_vae(runs, method, seeds)
        lines.append(f"| {title} | {len(mine)} | " + " | ".join(cells) + f" | {verdict} |")
    first = next(iter(runs.values()))
    lines += [
        "",
        f"{first['steps']:,} steps of {BATCH} ({first['images_seen']:,} images, "
        f"{first['images_seen'] / (PAPER_STEPS * BATCH):.1%} of the papers' {PAPER_STEPS:,} steps) per run; "
        f"{first['machine']['cpu']}, {first['machine']['torch_threads']} torch thread per run; "
        f"DCI on {first['dci_train_points']:,} training points.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, nargs="?", help="the study folder `vaekit sweep` wrote")
    parser.add_argument("--out", type=Path, default=HERE / "disentanglement.json")
    parser.add_argument("--against", type=Path, help="an earlier record of the same seeds to compare with")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and stop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads each run had (cores / workers)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.table or args.study is None:
        print(render(read_json(args.out)))
        return
    results = record(args.study, args.threads)
    write_json(args.out, results)
    print(render(results))
    if args.against is not None:
        print("\nrun, figure, this record, the earlier one, difference")
        print("\n".join(differences(results, read_json(args.against))))


if __name__ == "__main__":
    main()
