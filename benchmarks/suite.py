"""vaekit's benchmark suite: training throughput, time to a target quality, peak memory,
evaluation cost and scaling with data, side by side with the classic tutorial loop.

    python benchmarks/suite.py                 # everything, about 15 minutes on 2 cores
    python benchmarks/suite.py --quick         # fewer repeats and epochs, a few minutes
    python benchmarks/suite.py --only throughput --models mlp
    python benchmarks/suite.py --only memory    # vaekit.fit on a tensor vs the built-in set
    python benchmarks/suite.py --only one-class # one-class Fashion-MNIST AUROC (benchmarks/one_class.py)
    python benchmarks/suite.py --only objectives # each objective's step against the VAE's (objective_cost.py)

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
OWN_DATA = ("best-binarized",)  # presets measured on their own data (binarised MNIST), not Fashion-MNIST


# --- children: one measurement each, printing one JSON line --------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _peak_gpu_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _splits_and_config(model: str, fraction: float, epochs: int) -> tuple[Any, Any]:
    import dataclasses

    from vaekit.data import load_dataset
    from vaekit.presets import preset_config

    config = preset_config(model)
    data = config.data if model in OWN_DATA else dataclasses.replace(config.data, dataset=FASHION)
    config = dataclasses.replace(
        config, data=data, train=dataclasses.replace(config.train, epochs=epochs, checkpoint_every=0)
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
    from vaekit.devices import resolve_device
    from vaekit.metrics.elbo import elbo_over
    from vaekit.models import build_run_model
    from vaekit.training.loop import train_model

    config, splits = _splits_and_config(model, fraction, epochs)
    if overrides:
        config = with_overrides(config, overrides)
    torch.manual_seed(config.train.seed)
    net = build_run_model(config, splits.shape)

    class TestEveryEpoch:
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def on_epoch_end(self, model_: Any, report: Any) -> None:
            test = elbo_over(model_, splits.test.images, config.data, 1000, seed=0)
            self.rows.append(
                {"train_seconds": len(splits.train) / report.images_per_second, "test_nelbo_nats": test.nelbo_nats}
            )

    recorder = TestEveryEpoch()
    device = resolve_device(config.train.device)
    train_model(net.to(device), splits, dataclasses.replace(config), callbacks=[recorder], progress=False)
    return {
        "epochs": recorder.rows,
        "train_images": len(splits.train),
        "steps_per_epoch": -(-len(splits.train) // config.train.batch_size),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_gpu_mb": _peak_gpu_mb(),
    }


def child_baseline_epochs(model: str, epochs: int, fraction: float) -> dict[str, Any]:
    """The tutorial loop on the same images (vaekit's training split) and architecture."""
    from tutorial_baseline import train_epochs

    config, splits = _splits_and_config(model, fraction, epochs)
    rows = train_epochs(config, splits, epochs)
    return {
        "epochs": rows,
        "train_images": len(splits.train),
        "peak_rss_mb": _peak_rss_mb(),
        "peak_gpu_mb": _peak_gpu_mb(),
    }


def child_iwae(k: int) -> dict[str, Any]:
    from vaekit.data import load_dataset
    from vaekit.metrics.likelihood import iwae_over
    from vaekit.models import build_run_model
    from vaekit.presets import preset_config

    config = preset_config("mlp")
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    net = build_run_model(config, splits.shape).eval()
    started = time.perf_counter()
    summary = iwae_over(net, splits.test.images, config.data, k=k)
    return {"seconds": time.perf_counter() - started, "k": k, "images": summary.images, "peak_rss_mb": _peak_rss_mb()}


def child_disk(count: int, workdir: str) -> dict[str, Any]:
    """Write `count` synthetic 28x28 images as an on-disk set, then train one epoch streaming it."""
    import dataclasses

    import numpy as np

    from vaekit.config import with_overrides
    from vaekit.data import load_dataset
    from vaekit.data.disk import write_converted
    from vaekit.models import build_run_model
    from vaekit.presets import preset_config
    from vaekit.training.loop import train_model

    rng = np.random.default_rng(0)

    def batches():  # noise plus one bright quadrant, 50,000 images at a time
        for start in range(0, count, 50_000):
            n = min(50_000, count - start)
            images = rng.integers(0, 40, size=(n, 1, 28, 28), dtype=np.uint8)
            quadrant = rng.integers(0, 4, size=n)
            for q in range(4):
                rows = quadrant == q
                images[rows, :, (q // 2) * 14 : (q // 2) * 14 + 14, (q % 2) * 14 : (q % 2) * 14 + 14] = 220
            yield images

    folder = write_converted(Path(workdir) / f"set-{count}", batches(), (1, 28, 28))
    rss_before = _peak_rss_mb()
    config = with_overrides(preset_config("mlp"), {"data": {"dataset": str(folder)}, "train": {"epochs": 1}})
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, checkpoint_every=0))
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    started = time.perf_counter()
    reports = train_model(build_run_model(config, splits.shape), splits, config, progress=False)
    return {
        "images": count,
        "train_images": len(splits.train),
        "epoch_seconds": time.perf_counter() - started,
        "train_images_per_second": reports[0].images_per_second,
        "peak_rss_mb_before_training": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
        "data_file_mb": folder.joinpath("images.u8").stat().st_size / 2**20,
    }


def child_serve(requests: int) -> dict[str, Any]:
    """Latency of POST /api/decode for the mlp preset, through a real server on loopback (a new
    connection per request, as the page makes them), and of the decode alone in-process."""
    import threading
    import urllib.request

    from vaekit.data import load_dataset
    from vaekit.loading import TrainedRun
    from vaekit.models import build_run_model
    from vaekit.presets import preset_config
    from vaekit.serve.explorer import LatentExplorer
    from vaekit.serve.server import make_server

    config = preset_config("mlp")
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)  # decoding costs the same whatever the weights
    run = TrainedRun(Path("benchmark"), build_run_model(config, splits.shape).eval(), config, {})
    explorer = LatentExplorer(run, splits)
    server = make_server(explorer, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/decode"
    generator = torch.Generator().manual_seed(0)
    bodies = [json.dumps({"z": torch.randn(20, generator=generator).tolist()}).encode() for _ in range(requests)]

    def timed(call: Any) -> list[float]:
        call()  # warm-up
        times = []
        for body in bodies:
            started = time.perf_counter()
            call(body)
            times.append(time.perf_counter() - started)
        return sorted(times)

    http = timed(lambda body=bodies[0]: urllib.request.urlopen(urllib.request.Request(url, data=body)).read())
    direct = timed(lambda body=bodies[0]: explorer.decode(json.loads(body)["z"]))
    server.shutdown()
    return {
        "requests": requests,
        "http_median_ms": 1000 * http[len(http) // 2],
        "http_p95_ms": 1000 * http[int(0.95 * len(http))],
        "decode_median_ms": 1000 * direct[len(direct) // 2],
    }


def child_memory(source: str, workdir: str) -> dict[str, Any]:
    """Two epochs of the mlp preset from the built-in set (`vaekit train`'s path) or from the same
    images handed over as a float tensor (`vaekit.fit`); the second epoch's throughput."""
    from vaekit.data import load_dataset
    from vaekit.presets import preset_config
    from vaekit.training.api import fit
    from vaekit.training.run import train_run

    config = preset_config("mlp")
    settings = {"epochs": 2, "checkpoint_every": 0}
    started = time.perf_counter()
    if source == "builtin":
        from vaekit.config import with_overrides

        config = with_overrides(config, {"data": {"dataset": FASHION}, "train": settings})
        train_run(config, Path(workdir) / "run", progress=False)
    else:
        images = load_dataset(config.data, progress=False).train.array  # uint8 (55000, 1, 28, 28)
        tensor = torch.from_numpy(images).float().div_(255.0)  # what a user holds: float in [0, 1]
        handed_over = time.perf_counter()
        fit(tensor, out=Path(workdir) / "run", preset="mlp", **settings)
        started = handed_over
    lines = [json.loads(line) for line in (Path(workdir) / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "images_per_second": lines[-1]["train_images_per_second"],
        "wall_seconds": time.perf_counter() - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _cuda_seconds(work: Any, repeats: int) -> float:
    """Seconds per call of `work` on the GPU: queued `repeats` times, timed to the last kernel's end."""
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def _kernels_per_call(work: Any, calls: int) -> float:
    """GPU activities (kernels, copies, fills) one call of `work` starts, counted by the profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            work()
        torch.cuda.synchronize()
    return sum(1 for event in prof.events() if event.device_type == DeviceType.CUDA) / calls


def _graph_step_seconds(model_name: str, splits: Any, config: Any, repeats: int) -> float:
    """The same training step (ELBO, backward, fused Adam) captured once in a CUDA graph and
    replayed: what the step costs with no launch overhead at all, the batch gathered outside."""
    from vaekit.data.transforms import to_model_input
    from vaekit.models import build_run_model

    torch.manual_seed(0)
    net = build_run_model(config, splits.shape).cuda()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.train.lr, fused=True, capturable=True)
    resident = torch.from_numpy(splits.train.array).cuda()  # uint8 (N, C, H, W)
    batch_size = config.train.batch_size
    static_x = to_model_input(resident[:batch_size], config.data)

    def step() -> None:
        loss = net.elbo(static_x).loss.mean()  # noise from the default CUDA generator: capturable
        loss.backward()
        optimizer.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
        for _ in range(3):
            optimizer.zero_grad(set_to_none=False)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        optimizer.zero_grad(set_to_none=False)
        step()
    count = len(resident) // batch_size

    def replay(state: list[int] = [0]) -> None:  # noqa: B006  (a counter kept between calls)
        start = (state[0] % count) * batch_size
        static_x.copy_(to_model_input(resident[start : start + batch_size], config.data))
        graph.replay()
        state[0] += 1

    for _ in range(10):
        replay()
    return _cuda_seconds(replay, repeats)


def child_launch_floor(model: str, steps: int) -> dict[str, Any]:
    """On CUDA, vaekit's training step (Trainer.step, as an epoch runs it) against two floors: the
    kernels it launches times what one launch costs from eager PyTorch (a one-element add in a
    loop), and the same step replayed from a CUDA graph."""
    import dataclasses

    from vaekit.models import build_run_model
    from vaekit.training.loop import Trainer

    config, splits = _splits_and_config(model, 1.0, 1)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, device="cuda"))
    torch.manual_seed(0)
    trainer = Trainer(build_run_model(config, splits.shape).cuda(), splits, config, progress=False)
    order = trainer.state.start_epoch().cuda()
    batch_size = config.train.batch_size
    count = len(order) // batch_size
    position = [0]

    def vaekit_step() -> None:
        start = (position[0] % count) * batch_size
        trainer.step(order[start : start + batch_size], lambda: False)
        position[0] += 1

    for _ in range(30):
        vaekit_step()
    step_seconds = _cuda_seconds(vaekit_step, steps)
    result: dict[str, Any] = {"model": model, "batch_size": batch_size, "vaekit_step_us": 1e6 * step_seconds}
    try:
        result["kernels_per_step"] = _kernels_per_call(vaekit_step, 20)
    except Exception as exc:  # the profiler is optional: the floor is then not known, the rest is
        result["kernels_per_step_error"] = repr(exc)[:300]
    one = torch.zeros(1, device="cuda")
    for _ in range(1000):
        one.add_(1.0)
    result["eager_launch_us"] = 1e6 * _cuda_seconds(lambda: one.add_(1.0), 20_000)
    if "kernels_per_step" in result:
        result["launch_floor_step_us"] = result["kernels_per_step"] * result["eager_launch_us"]
        result["vaekit_over_launch_floor"] = result["vaekit_step_us"] / result["launch_floor_step_us"]
    try:
        result["graph_step_us"] = 1e6 * _graph_step_seconds(model, splits, config, steps)
        result["vaekit_over_graph"] = result["vaekit_step_us"] / result["graph_step_us"]
    except Exception as exc:  # capture can fail on a model that syncs inside its step; say so
        result["graph_error"] = repr(exc)[:300]
    result["peak_gpu_mb"] = _peak_gpu_mb()
    return result


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


VARIANTS = {"vaekit": {}, "vaekit-bf16": {"train": {"precision": "bf16"}}}


def throughput(models: list[str], repeats: int) -> dict[str, Any]:
    """Seconds per training epoch on the 55,000-image split; vaekit in fp32 and bf16 vs baseline.

    Each run trains two epochs and the second is timed: the steady state, after one-time costs
    (kernel selection, allocator warm-up) that both loops pay in their first epoch."""
    out: dict[str, Any] = {}
    for model in models:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*VARIANTS, "baseline"]}
        for _ in range(repeats):  # interleaved, so drifts of the machine hit every variant alike
            for name, overrides in VARIANTS.items():
                runs[name].append(run_child(["vaekit", model, "2", "1.0", json.dumps(overrides)]))
            runs["baseline"].append(run_child(["baseline", model, "2", "1.0"]))
        summary: dict[str, Any] = {}
        for name, results in runs.items():
            seconds = [r["epochs"][-1]["train_seconds"] for r in results]
            summary[name] = {
                "seconds_per_epoch": median(seconds),
                "images_per_second": results[0]["train_images"] / median(seconds),
                "all_seconds": seconds,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            }
        base = summary["baseline"]["seconds_per_epoch"]
        for name in VARIANTS:
            summary[name]["speedup_vs_baseline"] = base / summary[name]["seconds_per_epoch"]
        out[model] = summary
        line = "  ".join(
            f"{name} {summary[name]['seconds_per_epoch']:.2f} s ({summary[name].get('speedup_vs_baseline', 1):.2f}x)"
            for name in runs
        )
        print(f"{model:13s} s/epoch: {line}")
    return out


def arithmetic_ceiling(throughput_mlp: dict[str, Any]) -> dict[str, Any]:
    """The mlp's floating-point work per epoch against this machine's measured sgemm peak."""
    n, hidden, latent, pixels = 55_000, 400, 20, 784
    macs_forward = pixels * hidden + hidden * 2 * latent + latent * hidden + hidden * pixels  # per image
    flops_per_image = 3 * 2 * macs_forward  # forward, plus backward at twice the forward
    peak = sgemm_gflops()
    ceiling_seconds = n * flops_per_image / (peak * 1e9)
    fp32 = throughput_mlp["vaekit"]["seconds_per_epoch"]
    result = {
        "flops_per_image": flops_per_image,
        "sgemm_peak_gflops": peak,
        "fp32_ceiling_seconds_per_epoch": ceiling_seconds,
        "vaekit_fp32_fraction_of_ceiling": ceiling_seconds / fp32,
        "baseline_fraction_of_ceiling": ceiling_seconds / throughput_mlp["baseline"]["seconds_per_epoch"],
    }
    print(
        f"mlp arithmetic: {flops_per_image / 1e6:.2f} MFLOP/image x {n} images at the measured sgemm peak of "
        f"{peak:.0f} GFLOP/s = {ceiling_seconds:.2f} s/epoch; vaekit fp32 reaches "
        f"{result['vaekit_fp32_fraction_of_ceiling']:.0%} of it, "
        f"the baseline {result['baseline_fraction_of_ceiling']:.0%}"
    )
    return result


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def launch_floor(models: list[str], steps: int = 300) -> dict[str, Any]:
    """CUDA only: each model's training step against the launch-overhead floor and a CUDA graph."""
    out = {}
    for model in models:
        r = out[model] = run_child(["launch", model, str(steps)])
        floor = (
            f"{r['kernels_per_step']:.0f} kernels x {r['eager_launch_us']:.1f} us per eager launch = "
            f"{r['launch_floor_step_us']:.0f} us floor ({r['vaekit_over_launch_floor']:.2f}x of it)"
            if "launch_floor_step_us" in r
            else f"kernel count failed: {r.get('kernels_per_step_error')}"
        )
        graph = (
            f"the step in a CUDA graph {r['graph_step_us']:.0f} us ({r['vaekit_over_graph']:.2f}x)"
            if "graph_step_us" in r
            else f"graph capture failed: {r.get('graph_error')}"
        )
        print(f"{model:13s} CUDA step: vaekit {r['vaekit_step_us']:.0f} us; {floor}; {graph}")
    return out


def binarized_epoch(repeats: int) -> dict[str, Any]:
    """best-binarized (binarised MNIST): the steady-state epoch (the second) and its test -ELBO."""
    runs = [run_child(["vaekit", "best-binarized", "2", "1.0", "{}"]) for _ in range(repeats)]
    seconds = median([r["epochs"][-1]["train_seconds"] for r in runs])
    total = preset_epochs("best-binarized")
    result = {
        "seconds_per_epoch": seconds,
        "all_seconds": [r["epochs"][-1]["train_seconds"] for r in runs],
        "preset_epochs": total,
        "preset_train_minutes": seconds * total / 60,
        "test_nelbo_nats_after_2_epochs": runs[0]["epochs"][-1]["test_nelbo_nats"],
        "peak_gpu_mb": runs[0].get("peak_gpu_mb"),
    }
    print(
        f"best-binarized: {seconds:.2f} s per epoch ({total} epochs: {result['preset_train_minutes']:.1f} min of "
        f"training), test -ELBO after 2 epochs {result['test_nelbo_nats_after_2_epochs']:.2f} nats"
    )
    return result


def preset_epochs(name: str) -> int:
    from vaekit.presets import preset_config

    return preset_config(name).train.epochs


def time_to_target(epochs: int, repeats: int) -> dict[str, Any]:
    """Training time until the test negative ELBO reaches the baseline's after `epochs` epochs."""
    baseline = [run_child(["baseline", "mlp", str(epochs), "1.0"]) for _ in range(repeats)]
    target = median([b["epochs"][-1]["test_nelbo_nats"] for b in baseline])
    baseline_seconds = median([sum(row["train_seconds"] for row in b["epochs"]) for b in baseline])
    reached = []
    from vaekit.presets import preset_config

    fast_epochs = preset_config("mlp-fast").train.epochs
    for _ in range(repeats):
        run = run_child(["vaekit", "mlp-fast", str(fast_epochs), "1.0", "{}"])
        elapsed = 0.0
        for row in run["epochs"]:
            elapsed += row["train_seconds"]
            if row["test_nelbo_nats"] <= target:
                reached.append({"seconds": elapsed, "test_nelbo_nats": row["test_nelbo_nats"]})
                break
        else:
            reached.append({"seconds": float("inf"), "test_nelbo_nats": run["epochs"][-1]["test_nelbo_nats"]})
    seconds = median([r["seconds"] for r in reached])
    result = {
        "baseline_epochs": epochs,
        "target_test_nelbo_nats": target,
        "baseline_train_seconds": baseline_seconds,
        "vaekit_preset": "mlp-fast",
        "vaekit_seconds_to_target": seconds,
        "vaekit_runs": reached,
        "ratio": seconds / baseline_seconds,
    }
    print(
        f"time to the baseline's {epochs}-epoch test -ELBO ({target:.2f} nats): baseline {baseline_seconds:.1f} s, "
        f"vaekit mlp-fast {seconds:.1f} s ({result['ratio']:.2f} of the baseline's time)"
    )
    return result


def scaling(repeats: int) -> dict[str, Any]:
    rows = {}
    for fraction in (0.25, 0.5, 1.0):
        runs = [run_child(["vaekit", "mlp", "2", str(fraction), "{}"]) for _ in range(repeats)]
        seconds = [run["epochs"][-1]["train_seconds"] for run in runs]  # the steady-state epoch
        rows[str(fraction)] = median(seconds)
    per_image = {k: v / (55_000 * float(k)) * 1e6 for k, v in rows.items()}
    print(
        "scaling (mlp, s/epoch): "
        + ", ".join(f"{k} of the data {v:.2f} s ({per_image[k]:.1f} us/image)" for k, v in rows.items())
    )
    return {"seconds_per_epoch": rows, "microseconds_per_image": per_image}


def disk_scaling() -> dict[str, Any]:
    """Peak resident memory while training from an on-disk set of 100,000 and of 1,000,000 images."""
    import tempfile

    rows = {}
    for count in (100_000, 1_000_000):
        with tempfile.TemporaryDirectory(prefix="vaekit-bench-") as workdir:
            rows[str(count)] = run_child(["disk", str(count), workdir])
        r = rows[str(count)]
        print(
            f"on-disk set of {count:,} images ({r['data_file_mb']:.0f} MB): one epoch {r['epoch_seconds']:.1f} s "
            f"({r['train_images_per_second']:.0f} img/s), peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    return rows


def iwae_cost() -> dict[str, Any]:
    result = run_child(["iwae", "1000"])
    seconds, rss = result["seconds"], result["peak_rss_mb"]
    print(f"IWAE K=1000 on the 10,000 test images (mlp): {seconds:.1f} s, peak RSS {rss:.0f} MB")
    return result


def serve_latency() -> dict[str, Any]:
    result = run_child(["serve", "300"])
    print(
        f"vaekit serve, POST /api/decode (mlp, 28x28): median {result['http_median_ms']:.2f} ms, "
        f"95th percentile {result['http_p95_ms']:.2f} ms over {result['requests']} requests; decode + PNG alone "
        f"{result['decode_median_ms']:.2f} ms"
    )
    return result


def from_memory(repeats: int) -> dict[str, Any]:
    """Training from a tensor in memory (vaekit.fit) against the built-in set's path, same images
    and model, interleaved; the ratio of training throughput (second epochs)."""
    import tempfile

    runs: dict[str, list[dict[str, Any]]] = {"builtin": [], "tensor": []}
    for _ in range(repeats):
        for source in runs:
            with tempfile.TemporaryDirectory() as workdir:
                runs[source].append(run_child(["memory", source, workdir]))
    out = {
        source: {
            "images_per_second": median([r["images_per_second"] for r in results]),
            "wall_seconds": median([r["wall_seconds"] for r in results]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        }
        for source, results in runs.items()
    }
    out["throughput_ratio_tensor_vs_builtin"] = out["tensor"]["images_per_second"] / out["builtin"]["images_per_second"]
    tensor, builtin, ratio = out["tensor"], out["builtin"], out["throughput_ratio_tensor_vs_builtin"]
    print(
        f"mlp from a float tensor (vaekit.fit) vs the built-in set: {tensor['images_per_second']:.0f} vs "
        f"{builtin['images_per_second']:.0f} images/s in training ({ratio:.2f}x); "
        f"whole run {tensor['wall_seconds']:.1f} vs {builtin['wall_seconds']:.1f} s"
    )
    return out


def objective_costs() -> dict[str, Any]:
    """Each objective's step against the VAE's, in a process of its own (objective_cost.py)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(HERE / "objective_cost.py"), "--json"], capture_output=True, text=True, env=env, check=True
    )
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parts = ["throughput", "target", "scaling", "iwae", "disk", "serve", "memory", "objectives"]
    # one-class anomaly detection trains ten models (about 10 minutes): asked for by name only; the
    # launch floor and best-binarized's epoch are the GPU's parts (benchmarks/gpu_check.sh)
    parser.add_argument("--only", nargs="+", default=parts, choices=[*parts, "one-class", "launch", "binarized"])
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "vaekit":
            result = child_vaekit_epochs(rest[0], int(rest[1]), float(rest[2]), json.loads(rest[3]))
        elif kind == "baseline":
            result = child_baseline_epochs(rest[0], int(rest[1]), float(rest[2]))
        elif kind == "disk":
            result = child_disk(int(rest[0]), rest[1])
        elif kind == "serve":
            result = child_serve(int(rest[0]))
        elif kind == "memory":
            result = child_memory(rest[0], rest[1])
        elif kind == "launch":
            result = child_launch_floor(rest[0], int(rest[1]))
        else:
            result = child_iwae(int(rest[0]))
        print(json.dumps(result))
        return
    repeats = 1 if args.quick else args.repeats
    # With --only, the parts measured now replace their own entries in an existing results file.
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.update({"machine": machine(), "repeats": repeats})
    print(json.dumps(results["machine"]))
    if "throughput" in args.only:
        results["throughput"] = throughput(args.models, repeats)
        if "mlp" in results["throughput"] and not torch.cuda.is_available():  # the CPU's sgemm ceiling
            results["arithmetic"] = arithmetic_ceiling(results["throughput"]["mlp"])
    if "target" in args.only:
        results["time_to_target"] = time_to_target(epochs=3 if args.quick else 10, repeats=repeats)
    if "scaling" in args.only:
        results["scaling"] = scaling(repeats)
    if "iwae" in args.only:
        results["iwae"] = iwae_cost()
    if "disk" in args.only:
        results["disk"] = disk_scaling()
    if "serve" in args.only:
        results["serve"] = serve_latency()
    if "memory" in args.only:
        results["memory"] = from_memory(repeats)
    if "objectives" in args.only:
        results["objectives"] = objective_costs()
    if "launch" in args.only:
        if not torch.cuda.is_available():
            sys.exit("--only launch measures CUDA launches: this machine has no GPU")
        results["launch_floor"] = launch_floor(args.models)
    if "binarized" in args.only:
        results["binarized"] = binarized_epoch(repeats)
    if "one-class" in args.only:  # its own script and results file (benchmarks/one_class.json)
        subprocess.run([sys.executable, str(HERE / "one_class.py")], check=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
