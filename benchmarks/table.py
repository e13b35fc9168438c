"""Render benchmarks/results.json as the Markdown performance table used in docs/performance.md.

python benchmarks/table.py [benchmarks/results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"Machine: {machine['cores']} cores ({machine['cpu']}), torch {machine['torch']} with "
        f"{machine['torch_threads']} threads; median of {results['repeats']} runs, each timing a steady-state "
        "epoch (the second) over the 55,000 training images.",
        "",
        "| model | loop | s/epoch | images/s | vs tutorial loop | peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    names = {"baseline": "tutorial loop", "vaekit": "vaekit fp32", "vaekit-bf16": "vaekit bf16"}
    for model, variants in results.get("throughput", {}).items():
        for key in ("baseline", "vaekit", "vaekit-bf16"):
            row = variants[key]
            ratio = row.get("speedup_vs_baseline", 1.0)
            lines.append(
                f"| {model} | {names[key]} | {row['seconds_per_epoch']:.2f} | {row['images_per_second']:,.0f} | "
                f"{ratio:.2f}x | {row['peak_rss_mb']:.0f} MB |"
            )
    if "arithmetic" in results:
        a = results["arithmetic"]
        lines += [
            "",
            f"mlp arithmetic: {a['flops_per_image'] / 1e6:.2f} MFLOP per image (forward + backward) x 55,000 images "
            f"at the measured sgemm peak of {a['sgemm_peak_gflops']:.0f} GFLOP/s = "
            f"{a['fp32_ceiling_seconds_per_epoch']:.2f} s per epoch; vaekit fp32 runs at "
            f"{a['vaekit_fp32_fraction_of_ceiling']:.0%} of that ceiling, the tutorial loop at "
            f"{a['baseline_fraction_of_ceiling']:.0%}.",
        ]
    if "time_to_target" in results:
        t = results["time_to_target"]
        lines.append(
            f"Time to the tutorial loop's {t['baseline_epochs']}-epoch test -ELBO ({t['target_test_nelbo_nats']:.2f} "
            f"nats/image): tutorial loop {t['baseline_train_seconds']:.1f} s, vaekit `{t['vaekit_preset']}` "
            f"{t['vaekit_seconds_to_target']:.1f} s ({t['ratio']:.2f} of the time)."
        )
    if "scaling" in results:
        s = results["scaling"]["microseconds_per_image"]
        lines.append(
            "Scaling (mlp, fp32): "
            + ", ".join(f"{float(k):.0%} of the data {v:.1f} us/image" for k, v in s.items())
            + " (cost linear in the data)."
        )
    if "disk" in results:
        parts = [
            f"{int(k):,} images ({r['data_file_mb']:.0f} MB on disk): {r['train_images_per_second']:,.0f} img/s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
            for k, r in results["disk"].items()
        ]
        lines.append("Training streamed from an on-disk image set: " + "; ".join(parts) + ".")
    if "iwae" in results:
        i = results["iwae"]
        lines.append(
            f"IWAE with K = {i['k']} over the {i['images']:,} test images (mlp): {i['seconds']:.1f} s, "
            f"peak RSS {i['peak_rss_mb']:.0f} MB."
        )
    if "serve" in results:
        v = results["serve"]
        lines.append(
            f"`vaekit serve`, decoding one latent vector (mlp): {v['http_median_ms']:.1f} ms median, "
            f"{v['http_p95_ms']:.1f} ms 95th percentile per HTTP request on loopback; decode and PNG alone "
            f"{v['decode_median_ms']:.2f} ms."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results.json")
    print(render(json.loads(path.read_text())))
