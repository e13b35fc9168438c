"""Checkpoints as safetensors: tensors plus a JSON header that carries the run config.

A checkpoint file is self-contained (its config travels in the safetensors metadata), and
loading it never unpickles anything. Two formats share the header: a model checkpoint (the
weights) and a resumable snapshot (weights, optimiser, random streams and loop position, written
by training/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from vaekit.atomic import write_bytes
from vaekit.config import RunConfig
from vaekit.errors import VaekitError
from vaekit.models import VAE, build_run_model
from vaekit.models.vae import SeparatePart

FORMAT = "vaekit-checkpoint-1"
RESUME_FORMAT = "vaekit-resume-1"  # weights + optimiser + RNG + loop position
# A VQ-VAE's learned prior over its codes (training/code_prior.py), beside the checkpoint whose codes
# it models; attached on loading when it was trained for that checkpoint's step.

ImageShape = tuple[int, int, int]


def write_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    config: RunConfig,
    image_shape: ImageShape,
    info: dict[str, Any],
    file_format: str = FORMAT,
) -> None:
    """Write tensors (CPU, contiguous) with the header every vaekit checkpoint carries, atomically."""
    metadata = {
        "format": file_format,
        "config": json.dumps(config.to_dict()),
        "image_shape": json.dumps(list(image_shape)),
        "info": json.dumps(info),
    }
    write_bytes(path, save(tensors, metadata=metadata))


def save_checkpoint(path: str | Path, model: VAE, config: RunConfig, info: dict[str, Any]) -> None:
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    write_checkpoint(path, tensors, config, model.image_shape, info)


def read_metadata(path: str | Path, expected_format: str = FORMAT) -> dict[str, str]:
    """A checkpoint's header alone, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise VaekitError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise VaekitError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != expected_format:
        raise VaekitError(f"checkpoint {path} was not written by vaekit ({expected_format} header missing)")
    return metadata


def read_checkpoint(path: str | Path, expected_format: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    metadata = read_metadata(path, expected_format)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise VaekitError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    return tensors, metadata


def parse_header(path: str | Path, metadata: dict[str, str]) -> tuple[RunConfig, ImageShape, dict[str, Any]]:
    """The run config, image shape (C, H, W) and info dict a checkpoint's header holds."""
    try:
        config = RunConfig.from_dict(json.loads(metadata["config"]))
        channels, height, width = (int(v) for v in json.loads(metadata["image_shape"]))
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise VaekitError(f"checkpoint {path} has a damaged header ({exc})") from None
    return config, (channels, height, width), info


def weights_mismatch(model: VAE, tensors: dict[str, torch.Tensor], prefix: str = "") -> str | None:
    """What differs between the model's parameters and the tensors named `prefix` + name, or None."""
    expected = {prefix + name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items() if name.startswith(prefix)}
    if expected == found:
        return None
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = (
        f"missing {missing[:3]}" if missing else "",
        f"unexpected {extra[:3]}" if extra else "",
        f"wrong shape for {wrong[:3]}" if wrong else "",
    )
    return "; ".join(part for part in parts if part)


def non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """Which tensors hold a NaN or an infinity (vaekit never saves one: a skipped step never
    reaches the weights), or None."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return f"non-finite values in {bad[:3]}" if bad else None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", trust_code: bool = False
) -> tuple[VAE, RunConfig, dict[str, Any]]:
    """Rebuild the model from the checkpoint's own config and load its weights strictly. A
    network made by user code is built only with `trust_code` (models/custom.py)."""
    tensors, metadata = read_checkpoint(path)
    config, image_shape, info = parse_header(path, metadata)
    model = build_run_model(config, image_shape, trust_code, f"checkpoint {path}")
    mismatch = weights_mismatch(model, tensors)
    if mismatch is not None:
        raise VaekitError(f"checkpoint {path} does not match its own config ({mismatch}): the file is damaged")
    damaged = non_finite(tensors)
    if damaged is not None:
        raise VaekitError(f"checkpoint {path} is damaged ({damaged}): load another checkpoint or train again")
    model.load_state_dict(tensors, strict=True)
    for part in model.separate_parts():
        attach_part(part, Path(path).parent, info)
    return model.to(device), config, info


def attach_part(part: SeparatePart, folder: Path, info: dict[str, Any]) -> None:
    """Load a part a model keeps in a file of its own beside the checkpoint (a VQ-VAE's prior over
    codes, trained after the autoencoder), when there is one for this checkpoint."""
    path = folder / part.file
    if not path.is_file():
        return
    tensors, metadata = read_checkpoint(path, part.file_format)
    part_info = json.loads(metadata.get("info", "{}"))
    if part_info.get("checkpoint_step") != info.get("step"):
        return  # trained on another checkpoint's codes (best and last differ): not this one's part
    expected = {name: tuple(t.shape) for name, t in part.module.state_dict().items()}
    if {name: tuple(t.shape) for name, t in tensors.items()} != expected:
        raise VaekitError(f"{path} does not match this run's {part.description}: the file is damaged")
    part.module.load_state_dict(tensors, strict=True)
