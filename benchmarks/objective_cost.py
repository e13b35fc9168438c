"""What each objective costs per optimiser step against the plain VAE's step, on the same network
and batch: `python benchmarks/objective_cost.py` (about a minute on 2 cores), or
`python benchmarks/suite.py --only objectives`.

The network is Chen et al. (2018)'s MLP for dSprites (4096-1200-1200-10, decoder 10-1200-1200-
1200-4096; vaekit's mlp with those widths) on 64 x 64 binary dSprites images in batches of 64.
A step is what the trainer does (training/loop.py): the objective's forward pass, the backward
pass, Adam's update of the model (and of FactorVAE's discriminator). Every objective is timed in
rounds that interleave them, so a slower stretch of the machine touches all alike; the figure is
the median step over the rounds, and the ratio divides it by the VAE's from the same rounds.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import DataConfig, ModelConfig, RunConfig, with_overrides
from vaekit.data.dsprites import all_factors, render
from vaekit.data.transforms import to_model_input
from vaekit.models import build_run_model
from vaekit.objectives.base import StepBatch, own_parts
from vaekit.objectives.registry import build_objective

OBJECTIVES = ("elbo", "betatc", "dip-ii", "annealed", "infovae", "factorvae", "factorvae-d256")
# name -> (objective, its settings): the paper's discriminator (6 x 1000) and a narrower one
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"factorvae-d256": ("factorvae", {"discriminator_hidden": 256})}
TARGETS = {"betatc": 1.1, "dip-ii": 1.1, "factorvae": 1.6}  # issue 24's ceilings, as ratios to the VAE
BATCH = 64


def _images(count: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    factors = all_factors()[rng.choice(737_280, size=count, replace=False)]
    return to_model_input(torch.from_numpy(render(factors)), DataConfig())  # (N, 1, 64, 64) of 0/1


class Stepper:
    """One objective's training step on its own copy of the network."""

    def __init__(self, name: str) -> None:
        objective, settings = VARIANTS.get(name, (name, {}))
        network = ModelConfig(architecture="mlp", hidden_sizes=(1200, 1200), latent_dim=10, activation="tanh")
        sections = {"train": {"batch_size": BATCH}, "objective": {"name": objective, **settings}}
        config = with_overrides(RunConfig(model=network), sections)
        torch.manual_seed(0)
        self.model = build_run_model(config, (1, 64, 64))
        self.objective = build_objective(config, dataset_size=737_280)
        self.own = own_parts(self.objective)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, fused=True)
        self.generator = torch.Generator().manual_seed(0)
        self.step_count = 0

    def step(self, x: torch.Tensor) -> None:
        batch = StepBatch(x, None, self.step_count, 1.0, slice(0, len(x)), len(x), self.generator)
        terms = self.objective(self.model, batch)
        loss = terms.loss if terms.auxiliary is None else terms.loss + terms.auxiliary
        self.optimizer.zero_grad(set_to_none=True)
        if self.own is not None:
            self.own[1].zero_grad(set_to_none=True)
        loss.mean().backward()
        self.optimizer.step()
        if self.own is not None:
            self.own[1].step()
        self.step_count += 1


def measure(rounds: int = 5, steps: int = 20) -> dict[str, Any]:
    images = _images(BATCH * steps)
    steppers = {name: Stepper(name) for name in OBJECTIVES}
    for stepper in steppers.values():  # warm-up: allocator, kernels
        for i in range(3):
            stepper.step(images[i * BATCH : (i + 1) * BATCH])
    per_round: dict[str, list[float]] = {name: [] for name in OBJECTIVES}
    for _ in range(rounds):
        for name, stepper in steppers.items():
            started = time.perf_counter()
            for i in range(steps):
                stepper.step(images[i * BATCH : (i + 1) * BATCH])
            per_round[name].append((time.perf_counter() - started) / steps)
    vae = statistics.median(per_round["elbo"])
    return {
        "machine": {"cpu": platform.processor() or _cpu_model(), "threads": torch.get_num_threads()},
        "network": "mlp 4096-1200-1200-10 (tanh), Bernoulli, batch 64, 64x64 dSprites",
        "step_ms": {name: 1000 * statistics.median(times) for name, times in per_round.items()},
        "ratio_to_vae": {name: statistics.median(times) / vae for name, times in per_round.items()},
        "targets": TARGETS,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    result = measure()
    print(f"machine: {result['machine']['cpu']}, {result['machine']['threads']} threads; {result['network']}")
    for name in OBJECTIVES:
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f"  (target <= {target}x: {'met' if result['ratio_to_vae'][name] <= target else 'missed'})"
        )
        print(
            f"{name:10s} {result['step_ms'][name]:7.2f} ms/step  {result['ratio_to_vae'][name]:.2f}x the VAE{verdict}"
        )
    if "--json" in sys.argv:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
