"""The IWAE estimate of -log p(x) over a run's whole test split, in chunks that survive a stop.

`vaekit evaluate --k 1000` computes the same estimate in one pass, but for a large model it runs
for hours and keeps nothing if it is stopped. This script saves each chunk's per-image values in
RUN/iwae<K>/ as it finishes and, run again, skips the chunks already there. Each chunk draws its
importance samples (and, for binarised data, its binarisation of the test images) from its own
seed, so the figure is the same estimate as evaluate's, not the same digits.

    python benchmarks/resumable_iwae.py runs/best-binarized --k 1000 --chunk 500

Prints the running mean with its standard error over images after every chunk. On a machine with
more cores than one estimate uses, start several workers, each taking every N-th chunk:

    python benchmarks/resumable_iwae.py runs/best-binarized --workers 2 --worker 0 &
    python benchmarks/resumable_iwae.py runs/best-binarized --workers 2 --worker 1
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from vaekit.loading import load_run
from vaekit.metrics.likelihood import iwae_per_item
from vaekit.metrics.scores import IWAE_BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=500, help="test images per saved chunk")
    parser.add_argument("--workers", type=int, default=1, help="how many processes share the chunks")
    parser.add_argument("--worker", type=int, default=0, help="this process's number, 0 to --workers - 1")
    args = parser.parse_args()
    run = load_run(args.run)
    test = run.load_data().test
    labels = run.model.conditioning(test.labels, "the test set")
    folder = args.run / f"iwae{args.k}"
    folder.mkdir(exist_ok=True)
    for index, start in enumerate(range(0, len(test), args.chunk)):
        path = folder / f"chunk_{start:06d}.npy"
        if path.exists() or index % args.workers != args.worker:
            continue
        started = time.perf_counter()
        part = slice(start, start + args.chunk)
        log_px = iwae_per_item(
            run.model,
            test.array[part],
            run.config.data,
            args.k,
            IWAE_BATCH,
            seed=start + 1,
            labels=None if labels is None else labels[part],
        ).numpy()
        partial = folder / f"chunk.tmp{args.worker}.npy"  # renamed when whole: a stop never leaves half a chunk
        np.save(partial, log_px)
        partial.rename(path)
        done = np.concatenate([np.load(p) for p in sorted(folder.glob("chunk_*.npy"))])
        print(
            f"images {start}-{start + len(log_px) - 1}: {time.perf_counter() - started:.0f} s; "
            f"{len(done)} of {len(test)} done: -log p(x) {-done.mean():.2f} "
            f"± {done.std() / math.sqrt(len(done)):.2f} nats (K = {args.k})",
            flush=True,
        )


if __name__ == "__main__":
    main()
