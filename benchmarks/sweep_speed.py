"""How much faster a study runs with two workers than with one, and what the sweep itself costs
per run: `python benchmarks/sweep_speed.py [--rounds 2] [--out DIR]`.

The study: the `mlp` preset on Fashion-MNIST, 2 epochs, beta in {0.5, 1, 2, 4} times seeds
{0, 1, 2} (12 runs). Each round sweeps it into a fresh folder with --workers 1 and then with
--workers 2 (interleaved, so a slower stretch of the machine touches both), each a `vaekit sweep`
process of its own. The speed-up is the median wall time with one worker over that with two; the
overhead per run is the one-worker sweep's wall time less the sum of its runs' own wall times
(summary.json's wall_seconds, which count loading the data), divided by the runs. The last
round's two-worker study folder is kept (`--out`) for `vaekit compare`, which draws the Studies
guide's pictures from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
preset = "mlp"
[data]
dataset = "fashion-mnist"
[train]
epochs = 2
[grid]
"train.beta" = [0.5, 1.0, 2.0, 4.0]
"train.seed" = [0, 1, 2]
"""


def sweep(study: Path, out: Path, workers: int) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "vaekit", "sweep", str(study), "--out", str(out), "--quiet"]
    subprocess.run([*command, "--workers", str(workers)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_seconds(out: Path) -> float:
    return sum(json.loads(p.read_text())["wall_seconds"] for p in (out / "runs").glob("*/summary.json"))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/sweep-study"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vaekit-sweep-"))
    study = work / "study.toml"
    study.write_text(STUDY)
    times: dict[int, list[float]] = {1: [], 2: []}
    overheads = []
    for round_index in range(args.rounds):
        for workers in (1, 2):
            out = work / f"round{round_index}-w{workers}"
            times[workers].append(sweep(study, out, workers))
            if workers == 1:
                overheads.append((times[1][-1] - run_seconds(out)) / 12)
            print(f"round {round_index + 1}, {workers} worker(s): {times[workers][-1]:.1f} s", flush=True)
    kept = work / f"round{args.rounds - 1}-w2"
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(kept, args.out)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    result = {
        "cpu": cpu_model(),
        "cores": __import__("os").cpu_count(),
        "runs": 12,
        "seconds_one_worker": times[1],
        "seconds_two_workers": times[2],
        "speedup_two_workers": one / two,
        "overhead_seconds_per_run": statistics.median(overheads),
    }
    print(json.dumps(result, indent=2))
    (Path(__file__).parent / "sweep_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
