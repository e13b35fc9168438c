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

Every run is resumable on its own: a finished run is kept (its figures in the results file), a
killed one continues from its last checkpoint, so the command can be stopped and rerun at any
point. Two workers split the runs between them (each on one core, balanced by their cost):

    python benchmarks/disentanglement.py --worker 0 --workers 2 &
    python benchmarks/disentanglement.py --worker 1 --workers 2 &
    wait; python benchmarks/disentanglement.py --table     # the Markdown table in docs/results

Writes benchmarks/disentanglement.json (one entry per finished run, written as each finishes) and
the run folders under --work. Not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEPS = 8_000
BATCH = 64
PAPER_STEPS = 300_000  # Locatello et al. (2019) and the methods' papers: 300,000 steps of 64
SEEDS = (0, 1, 2)
DCI_TRAIN = 1_000  # disentanglement_lib uses 10,000: 264 s per model on 2 cores, 4 minutes x 18 runs

# name: (what the table calls it, train settings, objective settings, relative cost of a step)
METHODS: dict[str, tuple[str, dict[str, Any], dict[str, Any], float]] = {
    "vae": ("VAE (beta 1)", {"objective": "elbo"}, {}, 1.0),
    "beta-vae": ("beta-VAE (beta 4)", {"objective": "elbo", "beta": 4.0}, {}, 1.0),
    # its capacity_steps follow the run's length (config_of)
    "annealed": ("AnnealedVAE (C_max 25, gamma 1000)", {"objective": "annealed"}, {}, 1.0),
    "betatc": ("beta-TCVAE (beta 6)", {"objective": "betatc"}, {}, 1.0),
    "factorvae": ("FactorVAE (gamma 40)", {"objective": "factorvae"}, {}, 4.0),
    "dip-ii": ("DIP-VAE-II (lambda_od 10)", {"objective": "dip-ii"}, {}, 1.05),
}
NETWORK = {"architecture": "mlp", "hidden_sizes": (400,), "latent_dim": 10, "likelihood": "bernoulli"}


def assigned(worker: int, workers: int, methods: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """This worker's runs: the costliest first, each to the worker with the least work so far."""
    loads = [0.0] * workers
    mine = []
    runs = [(method, seed) for seed in seeds for method in methods]
    for method, seed in sorted(runs, key=lambda r: -METHODS[r[0]][3]):
        least = loads.index(min(loads))
        loads[least] += METHODS[method][3]
        if least == worker:
            mine.append((method, seed))
    return mine


def config_of(method: str, seed: int, steps: int) -> Any:
    from vaekit.presets import resolve

    _, train, objective, _ = METHODS[method]
    if method == "annealed":
        objective = {"capacity_steps": max(1, steps // 3)}  # C rises over the first third, as in the papers
    flags = {
        "data": {"dataset": "dsprites"},
        "model": dict(NETWORK),
        "train": {"epochs": 1, "max_steps": steps, "batch_size": BATCH, "lr": 1e-3, "seed": seed, **train},
        "objective": objective,
    }
    return resolve(flags=flags)


def train_or_resume(method: str, seed: int, folder: Path, steps: int) -> float:
    """Train the run in `folder` to its end (continuing a killed one); the seconds this call took."""
    from vaekit.training.run import resume_run, train_run

    started = time.perf_counter()
    if (folder / "summary.json").is_file():
        return 0.0
    if (folder / "checkpoints" / "resume.safetensors").is_file():
        resume_run(folder, progress=False)
    else:
        train_run(config_of(method, seed, steps), folder, force=folder.exists(), progress=False)
    return time.perf_counter() - started


def training_seconds(folder: Path) -> float:
    """The optimiser's time over the run's epochs (metrics.jsonl), resumes included, evaluation not."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(sum(row.get("epoch_seconds", 0.0) for row in rows if "epoch" in row))


def score(folder: Path, seed: int, dci_train: int) -> dict[str, Any]:
    """Test -ELBO, reconstruction and every disentanglement metric of the posterior means."""
    import numpy as np

    from vaekit.codes import encode_items
    from vaekit.data import load_dataset
    from vaekit.loading import load_run
    from vaekit.metrics.disentanglement import Representation, beta_vae_score, dci, factor_vae_score, mig, sap

    run = load_run(folder)
    splits = load_dataset(run.config.data, progress=False)
    test = splits.test
    assert test.factors is not None
    codes = encode_items(run.model, np.asarray(test.images), run.config.data, seed=seed).mean
    np.savez_compressed(folder / "test_codes.npz", codes=codes, factors=test.factors)
    rep = Representation(codes.astype(np.float64), test.factors)
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}
    figures: dict[str, Any] = {}
    for name, metric in (
        ("beta_vae_score", beta_vae_score),
        ("factor_vae_score", factor_vae_score),
        ("mig", mig),
        ("sap", sap),
        ("dci", lambda r, g: dci(r, g, train=dci_train, test=dci_train // 2)),
    ):
        started = time.perf_counter()
        figures[name] = metric(rep, rng)
        seconds[name] = time.perf_counter() - started
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "test_nelbo_nats": summary["test_nelbo_nats"],
        "test_recon_nats": summary["test_recon_nats"],
        "test_kl_nats": summary["test_kl_nats"],
        "metrics": figures,
        "metric_seconds": seconds,
        "dci_train_points": dci_train,
    }


def record(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one run's entry to the shared results file (read afresh: the other worker writes too)."""
    from vaekit.atomic import write_json

    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL)
            break
        except FileExistsError:
            # a worker killed while holding it leaves the lock behind: writing takes milliseconds
            with contextlib.suppress(FileNotFoundError):  # released between the two calls
                if time.time() - lock.stat().st_mtime > 60:
                    lock.unlink()
            time.sleep(0.2)
    try:
        results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
        results["runs"][key] = entry
        write_json(path, results)
    finally:
        os.close(descriptor)
        os.unlink(lock)


def work(args: argparse.Namespace) -> None:
    import torch
    from suite import machine  # benchmarks/suite.py: the CPU, cores, torch and its threads

    torch.set_num_threads(args.threads)
    done = json.loads(args.out.read_text())["runs"] if args.out.is_file() else {}
    for method, seed in assigned(args.worker, args.workers, args.methods, args.seeds):
        key = f"{method}/seed{seed}"
        if key in done and done[key]["steps"] == args.steps:
            continue
        folder = args.work / f"{method}-seed{seed}"
        took = train_or_resume(method, seed, folder, args.steps)
        entry = {
            "method": method,
            "seed": seed,
            "steps": args.steps,
            "images_seen": args.steps * BATCH,
            "training_seconds": training_seconds(folder),
            "this_call_seconds": took,
            "machine": machine(),
            **score(folder, seed, args.dci_train),
        }
        record(args.out, key, entry)
        m = entry["metrics"]
        print(
            f"{key}: -ELBO {entry['test_nelbo_nats']:.2f} nats, MIG {m['mig']['mig']:.3f}, "
            f"FactorVAE {m['factor_vae_score']['eval_accuracy']:.3f}, {entry['training_seconds']:.0f} s training",
            flush=True,
        )


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
    for method, (title, *_rest) in METHODS.items():
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
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimiser steps of 64 images per run")
    parser.add_argument("--dci-train", type=int, default=DCI_TRAIN, help="DCI's training points (test: half)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "vaekit" / "benchmark-disentanglement")
    parser.add_argument("--out", type=Path, default=HERE / "disentanglement.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and stop")
    args = parser.parse_args()
    if args.table:
        print(render(json.loads(args.out.read_text())))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    work(args)


if __name__ == "__main__":
    main()
