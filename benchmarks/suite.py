"""vaekit's benchmark suite: training throughput, time to a target quality, peak memory,
evaluation cost and scaling with data, side by side with the classic tutorial loop.

    python benchmarks/suite.py                 # everything, about 15 minutes on 2 cores
    python benchmarks/suite.py --quick         # fewer repeats and epochs, a few minutes
    python benchmarks/suite.py --only throughput --models mlp

Every measurement runs in a fresh subprocess (so peak resident memory is its own and runs never
overlap) and the suite prints ratios vaekit / baseline with the median of the repeats, then
writes everything to benchmarks/results.json. Not part of the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FASHION = "fashion-mnist"
MODELS = ("mlp", "conv-fashion")


# --- children: one measurement each, printing one JSON line --------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _splits_and_config(model: str, fraction: float, epochs: int) -> tuple[Any, Any]:
    import dataclasses

    from vaekit.config import preset_config
    from vaekit.data import load_dataset

    config = preset_config(model)
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, dataset=FASHION),
        train=dataclasses.replace(config.train, epochs=epochs, checkpoint_every=0),
    )
    splits = load_dataset(config.data, progress=False)
    if fraction < 1.0:
        keep = int(len(splits.train) * fraction)
        splits = dataclasses.replace(splits, train=splits.train.take(slice(0, keep)))  # type: ignore[arg-type]
    return config, splits


def child_vaekit_epochs(model: str, epochs: int, fraction: float, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train with vaekit's own loop; per epoch: training seconds and the test negative ELBO."""
    import dataclasses

    from vaekit.config import with_overrides
    from vaekit.models import build_model
    from vaekit.scoring import elbo_over
    from vaekit.train import fit

    config, splits = _splits_and_config(model, fraction, epochs)
    if overrides:
        config = with_overrides(config, overrides)
    torch.manual_seed(config.train.seed)
    net = build_model(config.model, splits.shape)

    class TestEveryEpoch:
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def on_epoch_end(self, model_: Any, report: Any) -> None:
            test = elbo_over(model_, splits.test.images, config.data, 1000, seed=0)
            self.rows.append(
                {"train_seconds": len(splits.train) / report.images_per_second, "test_nelbo_nats": test.nelbo_nats}
            )

    recorder = TestEveryEpoch()
    fit(net, splits, dataclasses.replace(config), callbacks=[recorder], progress=False)
    return {"epochs": recorder.rows, "train_images": len(splits.train), "peak_rss_mb": _peak_rss_mb()}


def child_baseline_epochs(model: str, epochs: int, fraction: float) -> dict[str, Any]:
    """The tutorial loop on the same images (vaekit's training split) and architecture."""
    from tutorial_baseline import train_epochs

    config, splits = _splits_and_config(model, fraction, epochs)
    rows = train_epochs(config, splits, epochs)
    return {"epochs": rows, "train_images": len(splits.train), "peak_rss_mb": _peak_rss_mb()}


def child_iwae(k: int) -> dict[str, Any]:
    from vaekit.config import preset_config
    from vaekit.data import load_dataset
    from vaekit.evaluate import iwae_over
    from vaekit.models import build_model

    config = preset_config("mlp")
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    net = build_model(config.model, splits.shape).eval()
    started = time.perf_counter()
    summary = iwae_over(net, splits.test.images, config.data, k=k)
    return {"seconds": time.perf_counter() - started, "k": k, "images": summary.images, "peak_rss_mb": _peak_rss_mb()}


def run_child(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the suite ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def throughput(models: list[str], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        per_impl: dict[str, list[dict[str, Any]]] = {"vaekit": [], "baseline": []}
        for _ in range(repeats):  # interleaved, so drifts of the machine hit both alike
            per_impl["vaekit"].append(run_child(["vaekit", model, "1", "1.0", "{}"]))
            per_impl["baseline"].append(run_child(["baseline", model, "1", "1.0"]))
        summary = {}
        for impl, runs in per_impl.items():
            seconds = [r["epochs"][0]["train_seconds"] for r in runs]
            summary[impl] = {
                "seconds_per_epoch": median(seconds),
                "images_per_second": runs[0]["train_images"] / median(seconds),
                "all_seconds": seconds,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            }
        summary["speedup"] = summary["baseline"]["seconds_per_epoch"] / summary["vaekit"]["seconds_per_epoch"]
        out[model] = summary
        print(
            f"{model:13s} vaekit {summary['vaekit']['seconds_per_epoch']:6.2f} s/epoch "
            f"({summary['vaekit']['images_per_second']:8.0f} img/s)   baseline "
            f"{summary['baseline']['seconds_per_epoch']:6.2f} s/epoch   ratio {summary['speedup']:.2f}x   "
            f"peak RSS {summary['vaekit']['peak_rss_mb']:.0f} MB vs {summary['baseline']['peak_rss_mb']:.0f} MB"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--only", nargs="+", default=["throughput"], choices=["throughput"])
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "vaekit":
            result = child_vaekit_epochs(rest[0], int(rest[1]), float(rest[2]), json.loads(rest[3]))
        elif kind == "baseline":
            result = child_baseline_epochs(rest[0], int(rest[1]), float(rest[2]))
        else:
            result = child_iwae(int(rest[0]))
        print(json.dumps(result))
        return
    repeats = 1 if args.quick else args.repeats
    results: dict[str, Any] = {"machine": machine(), "repeats": repeats}
    print(json.dumps(results["machine"]))
    if "throughput" in args.only:
        results["throughput"] = throughput(args.models, repeats)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
