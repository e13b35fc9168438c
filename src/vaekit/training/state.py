"""Everything the training loop carries between steps, and its snapshot as flat tensors.

Weights aside, the loop depends only on `TrainerState`: the optimiser, both random streams, this
epoch's permutation, the position in it, the running sums and the best validation figure. A
snapshot taken between two steps, restored later, continues the run bit for bit on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vaekit.config import RunConfig
from vaekit.models import VAE
from vaekit.objectives import lr_factor
from vaekit.training.distributed import SINGLE, Cluster, all_sum

# Seeds derived from the run seed, kept apart so that changing how many numbers one stream
# draws never shifts another stream.
EVAL_SEED_OFFSET = 1_000_003
NOISE_SEED_OFFSET = 7919
RANK_SEED_STRIDE = 104_729  # validation: each rank scores its own share with its own noise

# A function that persists a snapshot: (tensors, json-able info) -> None.
Checkpointer = Callable[[dict[str, torch.Tensor], dict[str, Any]], None]
Snapshot = tuple[dict[str, torch.Tensor], dict[str, Any]]


def steps_per_epoch(items: int, batch_size: int, min_batch: int = 1) -> int:
    """Batches in an epoch: the last one may be short, but is left out when it is smaller than the
    objective needs (a batch estimate of q(z) from one item is no estimate)."""
    full, rest = divmod(items, batch_size)
    return full + (1 if rest >= min_batch else 0)


class TrainerState:
    """Everything the loop carries between steps, plus (de)serialisation as flat tensors."""

    def __init__(
        self,
        model: VAE,
        config: RunConfig,
        n_images: int,
        cluster: Cluster = SINGLE,
        terms: int = 0,
        own: tuple[torch.nn.Module, torch.optim.Optimizer] | None = None,
    ) -> None:
        """`terms`: how many figures of its own the objective reports (summed beside the loss);
        `own`: the objective's own module and optimiser (a discriminator), saved and restored with
        the model's."""
        self.own = own
        train = config.train
        device = model.device
        self.cluster = cluster
        self.n_images = n_images
        self.batch_size = train.batch_size
        self.steps_per_epoch = steps_per_epoch(n_images, train.batch_size, config.objective.spec.min_batch)
        self.total_steps = self.steps_per_epoch * train.epochs
        if train.max_steps:  # a step budget shorter than the epochs ends the run (and the schedule) early
            self.total_steps = min(self.total_steps, train.max_steps)
        self.order_generator = torch.Generator().manual_seed(train.seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(train.seed + NOISE_SEED_OFFSET)
        # fused: one kernel for the whole update instead of a loop over parameters (a fifth of
        # an MLP step on CPU otherwise); same arithmetic, deterministic.
        self.optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, train.lr_schedule)
        )
        self.epoch = 1  # the epoch in progress (1-based)
        self.batch_index = 0  # the next batch of this epoch
        self.step = 0  # optimiser steps taken
        self.order: torch.Tensor | None = None  # this epoch's permutation, drawn when it starts
        # loss, recon, kl and the objective's own terms, summed over this rank's images
        self.width = 3 + terms
        self.totals = torch.zeros(self.width, dtype=torch.float64)
        self.counted = 0  # images in those sums (skipped steps add none)
        self.epoch_seconds = 0.0  # time spent in this epoch before a resume
        self.skipped_in_row = 0
        self.skipped_this_epoch = 0
        self.best_val = math.inf  # lowest validation -ELBO so far (nats per image)
        self.epochs_since_best = 0
        self.stopped = False  # early stopping ended the run

    def start_epoch(self) -> torch.Tensor:
        if self.order is None:
            self.order = torch.randperm(self.n_images, generator=self.order_generator)
        return self.order

    def record_validation(self, nelbo_nats: float) -> bool:
        """Track the best validation -ELBO (for the best checkpoint and early stopping); whether
        this one is a new best."""
        improved = nelbo_nats < self.best_val
        if improved:
            self.best_val, self.epochs_since_best = nelbo_nats, 0
        else:
            self.epochs_since_best += 1
        return improved

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch_index = 0
        self.order = None
        self.totals = torch.zeros(self.width, dtype=torch.float64)
        self.counted = 0
        self.epoch_seconds = 0.0
        self.skipped_this_epoch = 0

    def snapshot(self, model: VAE) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Flat tensors (safetensors-ready) and JSON-able info; no pickle anywhere.

        In a distributed run every rank must call it at the same step (it sums the ranks' running
        totals); the result describes the whole run.
        """
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        optim = self.optimizer.state_dict()
        tensors.update(_flat_optimizer_state(optim, "optim."))
        own_groups = None
        if self.own is not None:
            module, optimizer = self.own
            tensors.update({f"objective.{k}": v for k, v in module.state_dict().items()})
            own_state = optimizer.state_dict()
            tensors.update(_flat_optimizer_state(own_state, "objective_optim."))
            own_groups = own_state["param_groups"]
        tensors["rng.order"] = self.order_generator.get_state()
        tensors["rng.noise"] = self.noise_generator.get_state()  # the same on every rank
        totals = all_sum(torch.cat([self.totals.cpu(), torch.tensor([self.counted], dtype=torch.float64)]))
        tensors["loop.totals"] = totals[:-1].clone()
        if self.order is not None:
            tensors["loop.order"] = self.order
        info = {
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "step": self.step,
            "counted": int(totals[-1]),
            "epoch_seconds": self.epoch_seconds,
            "skipped_in_row": self.skipped_in_row,
            "skipped_this_epoch": self.skipped_this_epoch,
            "best_val": self.best_val if math.isfinite(self.best_val) else None,
            "epochs_since_best": self.epochs_since_best,
            "stopped": self.stopped,
            "param_groups": optim["param_groups"],
            "objective_param_groups": own_groups,
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
        }
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, info

    def restore(self, model: VAE, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(
            {"state": _optimizer_state(tensors, "optim."), "param_groups": info["param_groups"]}
        )
        if self.own is not None:
            module, optimizer = self.own
            module.load_state_dict(
                {k[len("objective.") :]: v for k, v in tensors.items() if k.startswith("objective.")}
            )
            optimizer.load_state_dict(
                {"state": _optimizer_state(tensors, "objective_optim."), "param_groups": info["objective_param_groups"]}
            )
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **info["scheduler"]})
        self.order_generator.set_state(tensors["rng.order"])
        self.noise_generator.set_state(tensors["rng.noise"])
        # The snapshot holds the run's sums: rank 0 carries them on, the others start from zero.
        main = tensors["loop.totals"].clone()
        self.totals = main if self.cluster.is_main else torch.zeros(self.width, dtype=torch.float64)
        self.counted = info["counted"] if self.cluster.is_main else 0
        self.order = tensors.get("loop.order")
        self.epoch, self.batch_index, self.step = info["epoch"], info["batch_index"], info["step"]
        self.epoch_seconds = info["epoch_seconds"]
        self.skipped_in_row, self.skipped_this_epoch = info["skipped_in_row"], info["skipped_this_epoch"]
        self.best_val = math.inf if info["best_val"] is None else info["best_val"]
        self.epochs_since_best, self.stopped = info["epochs_since_best"], info["stopped"]


def _flat_optimizer_state(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state as flat tensors named PREFIX<index>.<key>."""
    return {
        f"{prefix}{index}.{key}": torch.as_tensor(value)
        for index, per_param in state["state"].items()
        for key, value in per_param.items()
    }


def _optimizer_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[int, dict[str, torch.Tensor]]:
    """The inverse of _flat_optimizer_state: {index: {key: tensor}} from the PREFIX tensors."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix) :].split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
    return per_param
