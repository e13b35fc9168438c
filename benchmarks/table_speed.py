"""Training on a large mixed table: vaekit's time per epoch and peak memory beside SDV's TVAE on
the same rows (ggplot2's diamonds as plotnine ships it: 53,940 rows, 3 categories, 7 numbers).

Each side runs in a fresh process at one torch thread, for 2 and then 4 epochs: the time per
epoch is the difference over the 2 extra epochs (so that what each does once, TVAE's Gaussian
mixtures per number column and vaekit's reading and typing, is counted apart, as `setup`), and
the peak memory is the process's maximum resident set. Both at their defaults (vaekit's `table`
preset: batch 64; TVAE: batch 500), so a step is not the same work on each side: the epoch is.

    python benchmarks/table_speed.py         # writes benchmarks/table_speed.json
    python benchmarks/table_speed.py --full  # also whole fits: vaekit's 100 epochs, TVAE's default 300

Needs the tables benchmark's extra (see benchmarks/tables.py). Not part of the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUN = """
import json, resource, sys, tempfile, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[3])
from tables import load_table, fit_tvae, split
frame = load_table("diamonds")
if sys.argv[4] == "train":  # the benchmark's training rows (80%), as benchmarks/tables.py fits them
    frame = split(frame)[0]
epochs = int(sys.argv[2])
started = time.perf_counter()
if sys.argv[1] == "vaekit":
    import vaekit
    vaekit.fit(frame, out=tempfile.mkdtemp() + "/run", epochs=epochs, val_size=0)
else:
    fit_tvae(frame, 0, epochs)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(method: str, epochs: int, rows: str = "all") -> dict[str, float]:
    command = [sys.executable, "-c", RUN, method, str(epochs), str(HERE), rows]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(HERE))
    from suite import machine

    # machine() reads this process's torch threads; each measured run sets its own one
    results: dict[str, object] = {"table": "diamonds", "rows": 53_940, "machine": machine(), "threads_per_run": 1}
    for method in ("vaekit", "tvae"):
        short, long = measure(method, 2), measure(method, 4)
        per_epoch = (long["seconds"] - short["seconds"]) / 2
        results[method] = {
            "seconds_per_epoch": per_epoch,
            "setup_seconds": short["seconds"] - 2 * per_epoch,
            "peak_mb": max(short["peak_mb"], long["peak_mb"]),
        }
        print(method, results[method], flush=True)
    vaekit, tvae = results["vaekit"], results["tvae"]
    assert isinstance(vaekit, dict) and isinstance(tvae, dict)
    results["epoch_time_ratio_vaekit_over_tvae"] = vaekit["seconds_per_epoch"] / tvae["seconds_per_epoch"]
    results["peak_memory_ratio_vaekit_over_tvae"] = vaekit["peak_mb"] / tvae["peak_mb"]
    if "--full" in sys.argv:
        # whole fits on the benchmark's training rows: TVAE's default 300 epochs against vaekit's 100,
        # which gave it the higher quality and efficacy on diamonds (docs/results/tables.md)
        results["full_fit_seconds"] = {
            "vaekit_100_epochs": measure("vaekit", 100, "train")["seconds"],
            "tvae_300_epochs": measure("tvae", 300, "train")["seconds"],
        }
        print(results["full_fit_seconds"], flush=True)
    (HERE / "table_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
