"""The named presets, and how a run's settings are resolved: dataclass defaults, then the preset,
then a TOML config file, then command-line flags, each later layer naming only the fields it
changes.

The four classic tutorial VAEs are presets (`mlp`, `conv-small`, `conv-fashion`, `conv-32px`),
beside vaekit's own (`mlp-fast`, `best`, `binarized-mnist`, `best-binarized`) and `table`, the one
for vectors.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaekit.config import METHOD_SECTIONS, SECTION_LIST, SECTIONS, RunConfig, upgrade_sections, with_overrides
from vaekit.data.arrays import is_table_source
from vaekit.errors import VaekitError

# Fashion-MNIST and MNIST resized to 32x32 grey: D = 1024 pixels, Z = 128 latents.
_MSE_KL_PIXELS = 32 * 32
_MSE_KL_LATENTS = 128
TABLE_PRESET = "table"


def mse_kl_sigma(num_pixels: int, latent_dim: int, kl_weight: float = 0.1) -> float:
    """Sigma of a Gaussian likelihood that makes the ELBO (beta = 1) equivalent to the
    mean-reduced loss  mean_pixels((x - x_hat)^2) + kl_weight * mean_latents(KL_j).

    Multiplying that loss by c = Z / kl_weight leaves its minimiser unchanged and gives
        (Z / (kl_weight * D)) * sum_sq + sum_j KL_j.
    The Gaussian negative log-likelihood is sum_sq / (2 sigma^2) + const, so the two agree when
        1 / (2 sigma^2) = Z / (kl_weight * D)   =>   sigma = sqrt(kl_weight * D / (2 Z)).
    """
    return math.sqrt(kl_weight * num_pixels / (2.0 * latent_dim))


# Networks more than one preset uses (the presets add their likelihood and training settings).
_CLASSIC_MLP: dict[str, Any] = {"architecture": "mlp", "hidden_sizes": (400,), "latent_dim": 20, "activation": "relu"}
# How `best` and `best-binarized` train: KL warm-up and free bits against posterior collapse in the
# ladder, a peak learning rate decayed to zero by a cosine.
_BEST_TRAINING: dict[str, Any] = {
    "lr": 2e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 5000,
    "free_bits": 0.15,
    "batch_size": 100,
}
_CONV_FASHION_NETWORK: dict[str, Any] = {
    "architecture": "conv",
    "conv_channels": (32, 64, 72, 64),
    "conv_strides": (1, 2, 2, 1),
    "kernel_size": 3,
    "activation": "leaky_relu",
    "latent_dim": 64,
}


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    sections: dict[str, dict[str, Any]]

    def config(self) -> RunConfig:
        return with_overrides(RunConfig(), self.sections, preset=self.name)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            "mlp",
            "the classic PyTorch example: 784-400-20 MLP, ReLU, Bernoulli, Adam 1e-3, batch 128, 10 epochs",
            {
                "model": _CLASSIC_MLP,
                "train": {"lr": 1e-3, "batch_size": 128, "epochs": 10},
            },
        ),
        Preset(
            "mlp-fast",
            "the same 784-400-20 MLP trained for speed: bfloat16 matrix products, Adam 5e-3 with cosine decay, "
            "batch 128, 6 epochs (beats the classic example's 10-epoch ELBO in under a third of its time)",
            {
                "model": _CLASSIC_MLP,
                "train": {"lr": 5e-3, "lr_schedule": "cosine", "batch_size": 128, "epochs": 6, "precision": "bf16"},
            },
        ),
        Preset(
            "conv-small",
            "28x28 conv 1->8->16->32 (3x3, stride 2: 28->14->7->4), 512-d flatten, latent 32, "
            "Gaussian likelihood (summed squared error), beta 1",
            {
                "model": {
                    "architecture": "conv",
                    "conv_channels": (8, 16, 32),
                    "conv_strides": (2, 2, 2),
                    "kernel_size": 3,
                    "activation": "relu",
                    "latent_dim": 32,
                },
                # sigma^2 = 1/2 makes -log p(x|z) = sum of squared errors + const.
                "likelihood": {"name": "gaussian", "variance": "fixed", "sigma": math.sqrt(0.5)},
                "train": {"beta": 1.0, "lr": 1e-3, "batch_size": 128, "epochs": 10},
            },
        ),
        Preset(
            "conv-fashion",
            "28x28 conv 32(s1)->64(s2)->72(s2)->64(s1), LeakyReLU(0.01), 3136-d flatten, latent 64, "
            "Bernoulli, Adam 1e-3, batch 100, 30 epochs",
            {
                "data": {"dataset": "fashion-mnist"},
                "model": _CONV_FASHION_NETWORK,
                "likelihood": {"name": "bernoulli"},
                "train": {"lr": 1e-3, "batch_size": 100, "epochs": 30},
            },
        ),
        Preset(
            "conv-32px",
            "32x32 inputs in [-1,1], conv 32->64->128->256 (stride 2), latent 128, mean MSE + 0.1 * mean KL "
            f"as a Gaussian with sigma {mse_kl_sigma(_MSE_KL_PIXELS, _MSE_KL_LATENTS):.4f} and beta 1, "
            "Adam 1e-4, batch 64, 10 epochs",
            {
                "data": {"image_size": 32, "pixel_range": "symmetric"},
                "model": {
                    "architecture": "conv",
                    "conv_channels": (32, 64, 128, 256),
                    "conv_strides": (2, 2, 2, 2),
                    "kernel_size": 3,
                    "activation": "leaky_relu",
                    "latent_dim": _MSE_KL_LATENTS,
                },
                "likelihood": {
                    "name": "gaussian",
                    "variance": "fixed",
                    "sigma": mse_kl_sigma(_MSE_KL_PIXELS, _MSE_KL_LATENTS),
                },
                "train": {"beta": 1.0, "lr": 1e-4, "batch_size": 64, "epochs": 10},
            },
        ),
        Preset(
            "best",
            "vaekit's strongest Fashion-MNIST model, about 30 minutes on 2 CPU cores with native bf16 (add --precision "
            "fp32 where bf16 is emulated: about 2 hours): the conv-fashion network "
            "around z1 (64) under a second latent layer z2 (32) with ladder inference, a 3-layer pixel-context "
            "head on the decoder, KL warm-up over 5,000 steps and 0.15 free nats per latent dimension, "
            "Adam 2e-3 with cosine decay, bf16, batch 100, 45 epochs",
            {
                "model": {
                    **_CONV_FASHION_NETWORK,
                    "stochastic_layers": 2,
                    "top_latent_dim": 32,
                    "pixel_context_layers": 3,
                    "pixel_context_channels": 32,
                },
                "train": {**_BEST_TRAINING, "precision": "bf16", "epochs": 45},
            },
        ),
        Preset(
            TABLE_PRESET,
            "vectors and tables (.csv, 2-D .npy/.npz, arrays and DataFrames from Python), chosen for them when no "
            "preset is named: number columns standardised on the training split, MLP 128-128, latent 8, one "
            "likelihood per column (a Gaussian with a learned variance for each number column, floored; a "
            "categorical for each category or boolean column; empty cells left out), Adam 1e-3, batch 64, 300 epochs "
            "(TVAE's; on Palmer penguins 100 gave SDMetrics quality 0.831, 300 gave 0.880: docs/results/tables.md)",
            {
                "model": {
                    "architecture": "mlp",
                    "hidden_sizes": (128, 128),
                    "latent_dim": 8,
                    "activation": "relu",
                },
                "likelihood": {"name": "mixed", "sigma": 1.0},
                "train": {"lr": 1e-3, "batch_size": 64, "epochs": 300},
            },
        ),
        Preset(
            "binarized-mnist",
            "the single-layer VAE of Burda et al. 2016 on dynamically binarised MNIST: 784-200-200-50 MLP, tanh, "
            "Bernoulli, Adam 1e-3 with cosine decay, batch 100, 100 epochs (the paper trains 3,280 and reports "
            "86.76 nats at K = 5000)",
            {
                "data": {"dataset": "mnist", "binarize": True},
                "model": {"architecture": "mlp", "hidden_sizes": (200, 200), "latent_dim": 50, "activation": "tanh"},
                "train": {"lr": 1e-3, "lr_schedule": "cosine", "batch_size": 100, "epochs": 100},
            },
        ),
        Preset(
            "best-binarized",
            "vaekit's strongest dynamically binarised MNIST model within 60 minutes on 2 CPU cores: an MLP "
            "(512-512, LeakyReLU) around z1 (64) under z2 (32) with ladder inference, a 3-layer pixel-context head "
            "(32 channels), KL warm-up over 5,000 steps, 0.15 free nats per latent dimension, Adam 2e-3 with cosine "
            "decay, fp32, batch 100, 36 epochs on all 60,000 training images (test -log p(x) 81.43 nats by IWAE at "
            "K = 100)",
            {
                "data": {"dataset": "mnist", "binarize": True, "val_size": 0},
                "model": {
                    "architecture": "mlp",
                    "hidden_sizes": (512, 512),
                    "activation": "leaky_relu",
                    "latent_dim": 64,
                    "stochastic_layers": 2,
                    "top_latent_dim": 32,
                    "pixel_context_layers": 3,
                    "pixel_context_channels": 32,
                },
                # fp32: on CPUs without bf16 instructions bf16 is emulated, 2.2x slower here
                "train": {**_BEST_TRAINING, "precision": "fp32", "epochs": 36},
            },
        ),
        Preset(
            "svae-binarized",
            "the S-VAE of Davidson et al. 2018 in pythae's reproduction recipe (clementchadebec/benchmark_VAE, "
            "examples/scripts/reproducibility/svae.py): MLP 784-256-128 (ReLU) to a von Mises-Fisher posterior on the "
            "sphere S^10 (latent 11) under the uniform prior, Bernoulli, Adam 1e-3, batch 64, 500 epochs on all 60,000 "
            "dynamically binarised MNIST training images (pythae: 93.13 nats by IWAE at K = 500; reference 93.16)",
            {
                "data": {"dataset": "mnist", "binarize": True, "val_size": 0},
                "model": {
                    "architecture": "mlp",
                    "hidden_sizes": (256, 128),
                    "activation": "relu",
                    "latent_dim": 11,
                },
                "posterior": {"name": "vmf"},
                "train": {"lr": 1e-3, "batch_size": 64, "epochs": 500},
            },
        ),
        Preset(
            "iaf-binarized",
            "best-binarized with an inverse autoregressive flow posterior (Kingma et al. 2016): 2 IAF steps on z2 "
            "under a 32-number context from the encoder, bf16 (for CPUs with AVX512-BF16 or AMX; add --precision "
            "fp32 elsewhere), 75 epochs",
            {
                "data": {"dataset": "mnist", "binarize": True, "val_size": 0},
                "model": {
                    "architecture": "mlp",
                    "hidden_sizes": (512, 512),
                    "activation": "leaky_relu",
                    "latent_dim": 64,
                    "stochastic_layers": 2,
                    "top_latent_dim": 32,
                    "pixel_context_layers": 3,
                    "pixel_context_channels": 32,
                },
                "posterior": {"name": "iaf", "steps": 2, "hidden": 256},
                "train": {**_BEST_TRAINING, "precision": "bf16", "epochs": 75},
            },
        ),
    ]
}


def find_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise VaekitError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)} (see `vaekit presets`)")
    return PRESETS[name]


def preset_config(name: str) -> RunConfig:
    return find_preset(name).config()


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise VaekitError(f"config file {path} does not exist: check the path given to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise VaekitError(f"config file {path} is not valid TOML ({exc}): fix the file") from None
    except OSError as exc:
        raise VaekitError(f"config file {path} cannot be read ({exc.strerror})") from None


def resolve(
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """Defaults -> preset -> TOML file -> flags, each layer overriding the one before.

    The TOML file may name a preset itself (`preset = "mlp"` at top level); a preset given as a
    flag wins over it. The layers are merged first and the config is built once, so a rule that
    spans sections is checked on the finished combination.
    """
    file_values: dict[str, Any] = read_toml(config_file) if config_file is not None else {}
    return resolve_values(preset, file_values, flags, f"config file {config_file}")


def resolve_values(
    preset: str | None, file_values: dict[str, Any], flags: dict[str, dict[str, Any]] | None, source: str
) -> RunConfig:
    """`resolve` with the file's layer given as read (`source` names it in messages): a study's
    runs are its base sections with the grid's values as their flags."""
    file_values = dict(file_values)
    file_preset = file_values.pop("preset", None)
    chosen = preset if preset is not None else file_preset
    unknown = set(file_values) - {*SECTIONS, *METHOD_SECTIONS}
    if unknown:
        raise VaekitError(f"{source}: unknown section(s) {sorted(unknown)}; use {SECTION_LIST}")
    for section, values in file_values.items():
        if not isinstance(values, dict):
            raise VaekitError(f"{source}: [{section}] must be a table of settings")

    def merge(chosen: str | None) -> dict[str, dict[str, Any]]:
        preset_sections = find_preset(chosen).sections if chosen is not None else {}
        merged: dict[str, dict[str, Any]] = {}
        for layer in (preset_sections, file_values, flags or {}):
            for section, values in upgrade_sections(layer).items():
                earlier = merged.get(section, {})
                if "name" in values and values["name"] != earlier.get("name"):
                    earlier = {}  # another method: the earlier layers' settings were its predecessor's
                if values or earlier:
                    merged[section] = {**earlier, **values}
        return merged

    merged = merge(chosen)
    if chosen is None and is_table_source(str(merged.get("data", {}).get("dataset", ""))):
        # The defaults are made for images; a table without a named preset starts from `table`.
        chosen = TABLE_PRESET
        merged = merge(chosen)
    return with_overrides(RunConfig(), merged, preset=chosen)
