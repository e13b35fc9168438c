"""Which torch device a `--device` setting names: for training and for everything that loads a run."""

from __future__ import annotations

import torch

from vaekit.errors import VaekitError


def resolve_device(name: str) -> torch.device:
    """--device auto|cpu|cuda|cuda:N as a torch device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VaekitError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise VaekitError(f"--device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaekitError(f"--device {name} asked for CUDA but none is available here: use --device cpu or auto")
    return device
