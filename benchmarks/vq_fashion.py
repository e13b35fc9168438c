"""VQ-VAEs on 8-bit Fashion-MNIST (track c): the bound in bits/dim, the rate-distortion table at
equal rate against the Gaussian VAE swept over beta, and the sample quality of prior samples.

Every run is the same conv network (`conv-fashion`'s 32(s1)-64(s2)-72(s2)-64(s1), so a 7 x 7 code
map of 16-dim codes for the VQ-VAE and a 64-d latent for the Gaussian) with one discretised
logistic per pixel over the 256 levels (`--likelihood logistic --pixel-range symmetric`), so that
-log p(x|z) is a code length and the rate and the distortion add up to a bound in nats:

- `vq-k16`, `vq-k64`, `vq-k512`: the VQ-VAE with K codes, then its PixelCNN prior over code maps;
  rate = -log p(codes), distortion = -log p(x|codes);
- `gauss-b0.25` ... `gauss-b4`: the Gaussian VAE trained with beta on the KL; rate = KL(q||N(0, I)),
  distortion = -log p(x|z), both from the test -ELBO (the beta-weighted loss is not the bound);
- `vq-k512-head`: the K = 512 VQ-VAE with a 3-layer pixel-context head on its decoder, the row
  beside track (c)'s `mlp` + head. The prior samples of `vq-k512` are scored (the head's would
  take 784 sequential passes per batch of samples).

Resumable: each run's folder under --work is trained (or continued), its prior trained and its
test figures recorded in benchmarks/vq_fashion.json as each finishes; rerunning skips what is done.
Two processes can share the list (each takes the runs the other has not locked), e.g. one with
the runs in order and one with `--only` in the reverse order.

    python benchmarks/vq_fashion.py                    # every run, in order
    python benchmarks/vq_fashion.py --only vq-k16 gauss-b1
    python benchmarks/vq_fashion.py --table            # the Markdown tables for docs/results
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EPOCHS = 6
PRIOR_EPOCHS = 6
NETWORK = [
    "--preset", "conv-fashion", "--dataset", "fashion-mnist", "--likelihood", "logistic",
    "--pixel-range", "symmetric", "--sigma", "0.3", "--precision", "bf16", "--lr", "2e-3",
    "--lr-schedule", "cosine",
]  # fmt: skip
RUNS: dict[str, list[str]] = {
    "vq-k16": ["--posterior", "vq", "--codebook-size", "16"],
    "vq-k64": ["--posterior", "vq", "--codebook-size", "64"],
    "vq-k512": ["--posterior", "vq", "--codebook-size", "512"],
    "gauss-b0.25": ["--beta", "0.25"],
    "gauss-b0.5": ["--beta", "0.5"],
    "gauss-b1": ["--beta", "1"],
    "gauss-b2": ["--beta", "2"],
    "gauss-b4": ["--beta", "4"],
    "vq-k512-head": ["--posterior", "vq", "--codebook-size", "512", "--pixel-context-layers", "3"],
}
QUALITY_RUNS = ("vq-k512",)
LN2 = 0.6931471805599453


def vaekit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vaekit", *args], check=True)


def train(name: str, folder: Path, epochs: int) -> None:
    """Train (or continue) the run; a VQ-VAE's prior over codes after it."""
    if not (folder / "summary.json").is_file():
        if (folder / "checkpoints" / "resume.safetensors").is_file():
            vaekit("train", "--resume", str(folder), "--quiet")
        else:
            vaekit("train", *NETWORK, *RUNS[name], "--epochs", str(epochs), "--out", str(folder), "--force", "--quiet")
    if RUNS[name][:2] == ["--posterior", "vq"]:
        metrics = folder / "prior_metrics.jsonl"
        finished = metrics.is_file() and len(metrics.read_text().splitlines()) >= PRIOR_EPOCHS
        if not finished:
            vaekit("train-prior", "--run", str(folder), "--epochs", str(PRIOR_EPOCHS), "--force")


def figures(name: str, folder: Path, quality: bool) -> dict[str, Any]:
    """The test figures: the bound's parts (the VQ-VAE's under its learned prior), bits/dim, and
    the codebook's use or the sample quality where asked."""
    # K = 1: the table compares rate and distortion, the ELBO's own parts (a VQ-VAE's IWAE is its ELBO)
    args = ["evaluate", "--run", str(folder), "--k", "1"]
    vaekit(*args, *([] if quality else ["--no-quality"]))
    result = json.loads((folder / "eval.json").read_text())
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    entry = {
        "nelbo_nats": result["elbo_nelbo_nats"],
        "distortion_nats": result["elbo_recon_nats"],
        "rate_nats": result["elbo_kl_nats"],
        "elbo_bits_per_dim": result.get("elbo_bits_per_dim"),
        "iwae_nats": result.get("iwae_nll_nats"),
        "iwae_k": result.get("iwae_k"),
        "iwae_bits_per_dim": result.get("iwae_bits_per_dim"),
        "training_seconds": sum(row.get("epoch_seconds", 0.0) for row in rows),
        "epochs": len(rows),
        "codebook": result.get("codebook"),
        "quality": result.get("quality"),
    }
    prior = folder / "prior_metrics.jsonl"
    if prior.is_file():
        last = json.loads(prior.read_text().splitlines()[-1])
        entry["prior_seconds"] = last["seconds"]
    return entry


def recorded(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def work(args: argparse.Namespace) -> None:
    from suite import machine  # benchmarks/suite.py: the CPU, cores, torch and its threads

    from vaekit.atomic import write_json

    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        # Several processes may share the list: each run is taken by whoever locks it first, and
        # the lock goes with the process however it ends.
        lock = (args.work / f"{name}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        if name in recorded(args.out)["runs"]:
            lock.close()
            continue
        folder = args.work / name
        started = time.perf_counter()
        train(name, folder, args.epochs)
        entry = {**figures(name, folder, quality=name in QUALITY_RUNS), "machine": machine()}
        entry["wall_seconds"] = time.perf_counter() - started
        with (args.work / "results.lock").open("w") as writing:  # one writer at a time
            fcntl.flock(writing, fcntl.LOCK_EX)
            results = recorded(args.out)
            results["runs"][name] = entry
            write_json(args.out, results)
        lock.close()
        print(f"{name}: rate {entry['rate_nats']:.1f} nats, distortion {entry['distortion_nats']:.1f} nats, "
              f"bound {entry['elbo_bits_per_dim']:.3f} bits/dim", flush=True)  # fmt: skip


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
    parser.add_argument("--only", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--work", type=Path, default=Path("runs/vq-fashion"))
    parser.add_argument("--out", type=Path, default=HERE / "vq_fashion.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of what is recorded")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.table:
        print(render(json.loads(args.out.read_text())))
        return
    work(args)


if __name__ == "__main__":
    main()
