"""Checkpoints as safetensors: tensors plus a JSON header that carries the run config.

A checkpoint file is self-contained (its config travels in the safetensors metadata), and
loading it never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from vaekit.atomic import write_bytes
from vaekit.config import RunConfig
from vaekit.errors import VaekitError
from vaekit.models import VAE, build_model

FORMAT = "vaekit-checkpoint-1"
RESUME_FORMAT = "vaekit-resume-1"  # weights + optimiser + RNG + loop position


def save_checkpoint(path: str | Path, model: VAE, config: RunConfig, info: dict[str, Any]) -> None:
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "image_shape": json.dumps(list(model.image_shape)),
        "info": json.dumps(info),
    }
    write_bytes(path, save(tensors, metadata=metadata))


def read_checkpoint(path: str | Path, expected_format: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise VaekitError(f"checkpoint {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise VaekitError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != expected_format:
        raise VaekitError(f"checkpoint {path} was not written by vaekit ({expected_format} header missing)")
    return tensors, metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, RunConfig, dict[str, Any]]:
    """Rebuild the model from the checkpoint's own config and load its weights strictly."""
    tensors, metadata = read_checkpoint(path)
    try:
        config = RunConfig.from_dict(json.loads(metadata["config"]))
        channels, height, width = (int(v) for v in json.loads(metadata["image_shape"]))
        image_shape = (channels, height, width)
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise VaekitError(f"checkpoint {path} has a damaged header ({exc})") from None
    model = build_model(config.model, image_shape)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                f"wrong shape for {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise VaekitError(f"checkpoint {path} does not match its own config ({details}): the file is damaged")
    model.load_state_dict(tensors, strict=True)
    return model.to(device), config, info
