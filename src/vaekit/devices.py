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


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 matrix products in hardware. CPUs without AVX512-BF16 or
    AMX emulate them: the `best` network's epoch took twice as long as in fp32 on 2 Ice Lake cores."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    # torch's CPU feature checks are private: a torch without them gets no advice, never an error.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is None or check() for check in checks)


def precision_advice(precision: str, device: torch.device) -> str | None:
    """A one-line note for a bf16 run on a device that only emulates bf16, else None."""
    if precision != "bf16" or has_native_bf16(device):
        return None
    where = "this GPU" if device.type == "cuda" else "this CPU (no AVX512-BF16 or AMX)"
    return f"bf16 is emulated on {where} and slower than fp32 there: add --precision fp32 to train faster"
