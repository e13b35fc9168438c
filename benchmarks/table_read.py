"""Reading a large mixed table into the model's encoding: a CSV of 1,000,000 rows and 30 columns
(20 numbers, 8 categories of up to 50 values, 2 booleans, 5% of the cells empty), read and typed
by `read_csv_table` in a fresh process; its wall time and peak memory (the process's maximum
resident set) beside pandas.read_csv alone on the same file, the floor of any CSV reading.

    python benchmarks/table_read.py [--rows 1000000] [--folder /tmp]

Targets (issue 34): under 30 s and under 2 GB. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MEASURE = """
import json, resource, sys, time
started = time.perf_counter()
if sys.argv[2] == "vaekit":
    from vaekit.data.tables import read_csv_table
    table = read_csv_table(sys.argv[1])
    shape = list(table.features.shape)
else:
    import pandas as pd
    shape = list(pd.read_csv(sys.argv[1]).shape)
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "shape": shape}))
"""


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """The benchmark's CSV, written in chunks."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    chunk = 100_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        columns: dict[str, object] = {f"x{i}": np.round(rng.normal(i, 1 + i, n), 4) for i in range(20)}
        for i in range(8):
            columns[f"c{i}"] = rng.choice([f"v{j}" for j in range(5 + 6 * i)], n)
        for i in range(2):
            columns[f"b{i}"] = rng.random(n) < 0.3
        frame = pd.DataFrame(columns)
        frame = frame.mask(rng.random(frame.shape) < 0.05)
        frame.to_csv(path, mode="w" if start == 0 else "a", header=start == 0, index=False)


def measure(path: Path, which: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), which], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from suite import machine

    path = args.folder / f"vaekit-table-{args.rows}.csv"
    if not path.exists():
        write_table(path, args.rows)
    results = {
        "rows": args.rows,
        "file_mb": path.stat().st_size / 2**20,
        "pandas_read_csv": measure(path, "pandas"),
        "vaekit_read_csv_table": measure(path, "vaekit"),
        "machine": machine(),
    }
    print(json.dumps(results, indent=2))
    (HERE / "table_read.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
