"""How long `vaekit compare` takes over a study of 1,000 finished runs: `python
benchmarks/compare_speed.py`. The runs are one tiny real run (the mlp preset on 200 blob images,
one epoch) copied 1,000 times as a study folder, each copy with its own learning rate and seed in
its config and its own figures in its summary, so the table groups 100 settings over 10 seeds.
Times compare() (reading every run and grouping) and the Markdown, CSV and HTML with its plots."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import blob_images
from vaekit.studies.comparison import compare, write_comparison
from vaekit.training.api import fit


def make_study(root: Path, runs: int) -> Path:
    images, labels = blob_images(200, side=8, seed=5)
    template = root / "template"
    fit(images, labels, out=template, preset="mlp", epochs=1, progress=False)
    study = root / "study"
    (study / "runs").mkdir(parents=True)
    (study / "study.toml").write_text("# a synthetic study for the benchmark\n")
    config = json.loads((template / "config.json").read_text())
    summary = json.loads((template / "summary.json").read_text())
    metrics = (template / "metrics.jsonl").read_text()
    rng = np.random.default_rng(0)
    for i in range(runs):
        lr, seed = 1e-4 * (1 + i // 10), i % 10
        folder = study / "runs" / f"lr={lr:g},seed={seed}"
        folder.mkdir()
        config["train"].update(lr=lr, seed=seed)
        (folder / "config.json").write_text(json.dumps(config))
        noisy = {**summary, "test_nelbo_nats": summary["test_nelbo_nats"] + float(rng.normal())}
        (folder / "summary.json").write_text(json.dumps(noisy))
        (folder / "metrics.jsonl").write_text(metrics)
    return study


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="vaekit-compare-"))
    study = make_study(root, 1000)
    started = time.perf_counter()
    table = compare([study])
    compared = time.perf_counter() - started
    started = time.perf_counter()
    write_comparison(table, root / "out")
    written = time.perf_counter() - started
    result = {
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            platform.machine(),
        ),
        "runs": len(table.runs),
        "rows": len(table.rows),
        "compare_seconds": round(compared, 2),
        "write_seconds": round(written, 2),
    }
    print(json.dumps(result, indent=2))
    (Path(__file__).parent / "compare_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
