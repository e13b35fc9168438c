"""What rerunning Rainforth et al. (2018)'s binarised-MNIST recipe for MIWAE, PIWAE and CIWAE
costs here: the time of one optimiser step of each, measured on this machine, and the hours the
recipe's 3,280 epochs of batch 20 would take at that rate.

The recipe is pythae's reproduction (clementchadebec/benchmark_VAE,
examples/scripts/reproducibility: miwae.py, piwae.py, ciwae.py and their configs): the
784-200-200-50 tanh MLP of vaekit's `binarized-mnist` preset, dynamically binarised MNIST, Adam
1e-3, batch 20, 3,280 epochs over 60,000 images (9.84 million steps), M = 8 groups of K = 8
samples for MIWAE and PIWAE, K = 64 for CIWAE. In vaekit:

    vaekit train --preset binarized-mnist --objective miwae --iwae-groups 8 --iwae-samples 8 \\
        --batch-size 20 --epochs 3280 --val-size 0 --out runs/miwae

    python benchmarks/iwae_family.py            # times 200 steps of each; needs MNIST (get-mnist)

Writes benchmarks/iwae_family.json. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE_EPOCHS = 3_280
RECIPE_BATCH = 20
RECIPE_IMAGES = 60_000  # pythae trains on the 50,000 training and 10,000 validation images together
# objective: its settings in the recipe
RECIPES = {
    "miwae": {"objective": "miwae", "iwae_samples": 8, "iwae_groups": 8},
    "piwae": {"objective": "piwae", "iwae_samples": 8, "iwae_groups": 8},
    "ciwae": {"objective": "ciwae", "iwae_samples": 64, "ciwae_beta": 0.5},
}


def seconds_per_step(objective: str, steps: int) -> float:
    import torch

    from vaekit.data import load_dataset
    from vaekit.models import build_run_model
    from vaekit.presets import resolve
    from vaekit.training.loop import Trainer

    settings = dict(RECIPES[objective])
    train = {k: settings.pop(k) for k in ("objective", "iwae_samples")}
    config = resolve(
        preset="binarized-mnist",
        flags={"data": {"val_size": 0}, "train": {**train, "batch_size": RECIPE_BATCH}, "objective": settings},
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    trainer = Trainer(build_run_model(config, splits.shape), splits, config, progress=False)
    order = torch.randperm(len(splits.train))

    def never() -> bool:
        return False

    def batch(i: int) -> torch.Tensor:
        return order[i * RECIPE_BATCH : (i + 1) * RECIPE_BATCH]

    for i in range(20):  # warm-up
        trainer.step(batch(i), never)
    started = time.perf_counter()
    for i in range(20, 20 + steps):
        trainer.step(batch(i), never)
    return (time.perf_counter() - started) / steps


def main() -> None:
    from suite import machine  # benchmarks/suite.py: the CPU, cores, torch and its threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "iwae_family.json")
    args = parser.parse_args()
    recipe_steps = RECIPE_EPOCHS * (RECIPE_IMAGES // RECIPE_BATCH)
    where = machine()
    cpu, threads = where["cpu"], where["torch_threads"]
    results = {"cpu": cpu, "torch_threads": threads, "recipe_steps": recipe_steps, "objectives": {}}
    for objective in RECIPES:
        step = seconds_per_step(objective, args.steps)
        hours = step * recipe_steps / 3600
        results["objectives"][objective] = {"seconds_per_step": step, "recipe_hours": hours}
        print(
            f"{objective}: {step * 1000:.2f} ms per step of {RECIPE_BATCH}; the recipe's {recipe_steps:,} steps: "
            f"{hours:.1f} h ({cpu}, {threads} threads)",
            flush=True,
        )
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
