"""Will a run fit in memory? Checked before anything is allocated, so a setting that would need
more than the machine has is refused in one line instead of ending in an allocation failure.

The weights are counted on PyTorch's meta device (shapes without storage), four times over for
training: the weights, their gradients and Adam's two moments. A step's activations are the sum of
every tensor one item's forward pass makes (measured on the meta device too), times the batch, the
draws per item the objective takes, and two for the backward pass: a generous bound, meant to catch
what cannot fit, not to plan what can. A model whose construction needs real tensors (zuko's
masks) is counted with the default posterior family, whose networks are the encoder's and
decoder's; its own settings have declared ranges. A user's network that computes with real tensors
while it is built cannot be counted: such a run goes ahead unchecked.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vaekit.config import RunConfig
from vaekit.data.tables import schema_of
from vaekit.errors import VaekitError
from vaekit.methods import default_choice
from vaekit.models import VAE, build_model
from vaekit.objectives.base import own_parts
from vaekit.objectives.registry import build_objective

TRAINING_COPIES = 4  # weights, gradients, Adam's first and second moments
GIB = 1024**3


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of every tensor the operations under it make."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.total += tensor.numel() * tensor.element_size()
        return out


def _meta_model(config: RunConfig, shape: tuple[int, int, int]) -> VAE | None:
    """The model with shapes and no storage; with the default family when its own needs real
    tensors to be built; None when the networks themselves do (a user's factory that computes)."""
    for posterior in (config.posterior, default_choice("posterior")):
        with torch.device("meta"):
            try:
                return build_model(
                    config.model,
                    shape,
                    True,
                    posterior=posterior,
                    prior=config.prior,
                    likelihood=config.likelihood,
                    table=schema_of(config.data),
                )
            except (NotImplementedError, RuntimeError, ValueError, TypeError):
                continue
    return None


def _bytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _item_activation_bytes(model: VAE, shape: tuple[int, int, int], classes: int) -> int:
    """What one item's ELBO makes on its way, in bytes (0 where the pass cannot run on meta)."""
    x = torch.zeros((1, *shape), device="meta")
    y = torch.zeros((1,), dtype=torch.long, device="meta") if classes else None
    try:
        with _OutputBytes() as counted:
            model.elbo(x, eps=torch.zeros((1, model.noise_dim), device="meta"), y=y)
    except Exception:  # an operation with no meta kernel: the weights' check still stands
        return 0
    return counted.total


def available_bytes(device: torch.device) -> int:
    """Memory free for this process on `device`: MemAvailable on Linux for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def training_bytes(config: RunConfig, shape: tuple[int, int, int], train_items: int) -> tuple[int, int]:
    """(weights and optimiser state, one step's activations), in bytes, estimated without
    allocating either."""
    model = _meta_model(config, shape)
    if model is None:  # nothing to count without building it for real: the run goes ahead unchecked
        return 0, 0
    with torch.device("meta"):
        objective = build_objective(config, train_items)
    own = own_parts(objective)
    weights = TRAINING_COPIES * (_bytes(model) + (_bytes(own[0]) if own is not None else 0))
    draws = int(getattr(objective, "draws", 1))
    batch = min(config.train.batch_size, train_items)
    activations = 2 * batch * draws * _item_activation_bytes(model, shape, config.model.classes)
    return weights, activations


def check_fits(config: RunConfig, shape: tuple[int, int, int], train_items: int, device: torch.device) -> None:
    """Refuse, in one line, a run whose weights or steps cannot fit in the memory `device` has free."""
    weights, activations = training_bytes(config, shape, train_items)
    free = available_bytes(device)
    if weights + activations <= free:
        return
    raise VaekitError(
        f"this run needs about {(weights + activations) / GIB:.1f} GiB ({weights / GIB:.1f} GiB for the weights and "
        f"their optimiser state, {activations / GIB:.1f} GiB for a step at --batch-size {config.train.batch_size}), "
        f"more than the {free / GIB:.1f} GiB free on {device.type}: lower the sizes (--batch-size, the layers, "
        "--latent-dim, the method's own)"
    )
