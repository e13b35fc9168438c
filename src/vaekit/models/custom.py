"""The user's own encoder and decoder, made by a factory named `module.path:function`.

The contracts (checked on a dry run when the model is built, each fault named):
- `factory(spec: NetworkSpec) -> (encoder, decoder)`, both `torch.nn.Module`s;
- encoder: x (B, C, H, W) -> (B, spec.encoder_outputs): for the Gaussian posterior 2Z numbers, its
  mean, then its log-variance; another posterior family (`--posterior`) reads a width of its own
  (iaf: 2Z + the flow's context; vmf: Z + 1), so build the encoder's last layer with that width;
- decoder: z (B, Z) -> (B, P, H, W): the likelihood's parameters at every position, e.g. logits
  for a Bernoulli, means for a Gaussian (spec.output_shape gives P, H, W);
- for a table, (C, H, W) = (1, 1, D).

A run stores the factory's name, never its code. Building it imports the module, which runs code,
so vaekit does that only when told to trust it: training (the user named the factory) or
`--trust-code` / `trust_code=True` when a run is loaded. A checkpoint alone never imports anything.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from vaekit.config import FACTORY_NAME
from vaekit.errors import VaekitError

DRY_RUN_BATCH = 2


@dataclass(frozen=True)
class NetworkSpec:
    """What a factory builds for: shapes in, out and of the latent."""

    input_shape: tuple[int, int, int]  # (C, H, W) of one item; (1, 1, D) for a table
    latent_dim: int  # Z: what the decoder takes per item
    output_shape: tuple[int, int, int]  # (P, H, W): what the decoder emits per item
    # W: what the encoder emits per item, as the posterior family reads it (2Z for a Gaussian:
    # the mean, then the log-variance)
    encoder_outputs: int = -1

    def __post_init__(self) -> None:
        if self.encoder_outputs < 0:  # a spec made without it: the Gaussian's 2Z
            object.__setattr__(self, "encoder_outputs", 2 * self.latent_dim)


@runtime_checkable
class Encoder(Protocol):
    """x (B, C, H, W) -> posterior parameters (B, 2Z) = [mean, log-variance]."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Decoder(Protocol):
    """z (B, Z) -> likelihood parameters (B, P, H, W) (logits for a Bernoulli, means for a Gaussian)."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


class NetworkFactory(Protocol):
    def __call__(self, spec: NetworkSpec) -> tuple[nn.Module, nn.Module]: ...


def is_factory_name(architecture: str) -> bool:
    return FACTORY_NAME.fullmatch(architecture) is not None


def factory_name(factory: Callable[..., object]) -> str:
    """The `module:function` name a run stores for a factory given from Python; it must be
    importable by that name, or the run could not be loaded again."""
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname:
        raise VaekitError(
            f"the network factory {qualname or factory!r} is a lambda or defined inside a function: define it at the "
            "top level of a module, so a saved run can build it again"
        )
    if module == "__main__":
        raise VaekitError(
            f"the network factory {qualname} is defined in the script being run: put it in a module of its own "
            "(e.g. nets.py beside the script) and import it, so a saved run can build it again from anywhere"
        )
    return f"{module}:{qualname}"


def untrusted_message(architecture: str, source: str) -> str:
    return (
        f"{source} builds its network with user code ({architecture}); loading it would import and run that "
        "code, which vaekit does only when told: pass --trust-code (Python: trust_code=True) if you trust "
        "where the run came from"
    )


def resolve_factory(architecture: str) -> NetworkFactory:
    """Import `module:function` (the current directory first, as `python -m` would) and return it."""
    module_name, _, attribute = architecture.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise VaekitError(
            f"cannot import {module_name!r} for --architecture {architecture} ({exc}): run from the folder that "
            "holds it, or add that folder to PYTHONPATH"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise VaekitError(f"module {module_name!r} has no {attribute!r} for --architecture {architecture}")
        target = getattr(target, part)
    if not callable(target):
        raise VaekitError(f"--architecture {architecture} names {type(target).__name__}, not a function")
    return target  # callable; what it returns is checked in build_custom


def build_custom(architecture: str, spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """Call the factory and check its networks against the contracts on a dry run."""
    built = resolve_factory(architecture)(spec)
    if not (isinstance(built, tuple) and len(built) == 2 and all(isinstance(m, nn.Module) for m in built)):
        raise VaekitError(f"{architecture} must return (encoder, decoder), two torch.nn.Modules; got {built!r:.80}")
    encoder, decoder = built
    with torch.no_grad():
        x = torch.zeros(DRY_RUN_BATCH, *spec.input_shape)
        params = encoder(x)
        expected = (DRY_RUN_BATCH, spec.encoder_outputs)
        if not isinstance(params, torch.Tensor) or tuple(params.shape) != expected:
            got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
            what = (
                f"the mean then the log-variance of each of the {spec.latent_dim} latents"
                if spec.encoder_outputs == 2 * spec.latent_dim
                else "the posterior family's parameters: build the encoder's last layer with spec.encoder_outputs"
            )
            raise VaekitError(
                f"{architecture}: the encoder maps (B, C, H, W) = {(DRY_RUN_BATCH, *spec.input_shape)} to {got}; it "
                f"must give {expected}, {what}"
            )
        out = decoder(torch.zeros(DRY_RUN_BATCH, spec.latent_dim))
        wanted = (DRY_RUN_BATCH, *spec.output_shape)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != wanted:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise VaekitError(
                f"{architecture}: the decoder maps (B, Z) = {(DRY_RUN_BATCH, spec.latent_dim)} to {got}; it must "
                f"give {wanted}, the likelihood's parameters at every position"
            )
    return encoder, decoder
