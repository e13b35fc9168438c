"""Run configuration: frozen dataclasses, each checked when it is built.

A run is described by one `RunConfig` made of three sections (`data`, `model`, `train`). Every
rule, within a section or across sections, holds from construction on, so the Python API cannot
build a config the CLI would refuse. Configs are frozen; change them with `dataclasses.replace` or
`with_overrides`. The named presets and the order in which layers are resolved (defaults ->
preset -> file -> flags) are in presets.py, which imports this module and never the reverse.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vaekit.errors import VaekitError
from vaekit.methods import CAPABILITIES, KINDS, MethodChoice, choose, default_choice, legacy_keys, providers

Architecture = Literal["mlp", "conv", "resnet"]  # built in; or a factory's name, see FACTORY_NAME
# A user's network factory, module.path:function (models/custom.py builds it, with consent).
FACTORY_NAME = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh"]
PixelRange = Literal["unit", "symmetric"]
ArrayLayout = Literal["auto", "nhwc", "nchw"]  # how a 4-D .npy/.npz image array is laid out
BINARY_DATASETS = ("dsprites",)  # built-in sets whose pixels are 0 or 255 as stored
LrSchedule = Literal["constant", "cosine"]
Precision = Literal["fp32", "bf16"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise VaekitError(message)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(
        default="fashion-mnist",
        metadata=_help("built-in name (mnist, fashion-mnist) or a path to an image folder, .npz or .npy"),
    )
    data_dir: str | None = field(default=None, metadata=_help("folder to look in first for built-in dataset files"))
    image_size: int | None = field(default=None, metadata=_help("resize/crop images to this square size"))
    channels: int | None = field(default=None, metadata=_help("1 (grey) or 3 (RGB); default: as stored"))
    val_size: int | None = field(
        default=None,
        metadata=_help(
            "images held out of training for validation (default 5000, or 10%% of own data); 0: none, train on all "
            "and keep the last epoch (as papers report); under 1000 the last epoch is kept too"
        ),
    )
    binarize: bool = field(default=False, metadata=_help("dynamically binarise pixels (sampled per batch)"))
    dequantize: bool = field(
        default=False,
        metadata=_help(
            "spread each 8-bit pixel uniformly over its bin, x = (k + u) / 256 (drawn per batch): a continuous "
            "likelihood's nats then bound the 8-bit image's and get bits/dim"
        ),
    )
    pixel_range: PixelRange = field(default="unit", metadata=_help("unit: [0,1]; symmetric: [-1,1]"))
    train_limit: int | None = field(default=None, metadata=_help("use only the first N training images"))
    split_seed: int = field(default=0, metadata=_help("seed of the train/validation split (fixed across runs)"))
    label_column: str | None = field(
        default=None, metadata=_help("tables only: the column that holds each row's label (integers or class names)")
    )
    column_types: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "tables only: column types by name, e.g. zip=categorical,age=integer (numeric, integer, boolean, "
            "categorical); the other columns are typed from their values"
        ),
    )
    normal_classes: tuple[int, ...] | None = field(
        default=None,
        metadata=_help(
            "one-class anomaly detection: train and validate on these classes only, e.g. 3 or 0,6; the test split "
            "keeps every class, and vaekit evaluate gives each anomaly score's AUROC at telling the others apart"
        ),
    )
    array_layout: ArrayLayout = field(
        default="auto",
        metadata=_help(
            "how a 4-D .npy/.npz image array is laid out: nhwc (N, H, W, C), nchw (N, C, H, W, PyTorch's); auto: "
            "from the shape, refusing one that fits both"
        ),
    )
    # A table's per-feature standardisation, fitted on the training split when the run starts and
    # stored with it, so encode, sample and serve read and write the user's units. Not flags.
    feature_mean: tuple[float, ...] | None = field(default=None, metadata={"flag": False})
    feature_std: tuple[float, ...] | None = field(default=None, metadata={"flag": False})
    feature_names: tuple[str, ...] | None = field(default=None, metadata={"flag": False})
    # A table's columns (data/columns.py): each one's kind and, for booleans and categories, the
    # values of its one-hot positions; None: every column a number (runs from before kinds).
    # feature_names then name the columns, and feature_mean/std the encoded positions (one-hots: 0, 1).
    column_kinds: tuple[str, ...] | None = field(default=None, metadata={"flag": False})
    column_categories: tuple[tuple[str, ...], ...] | None = field(default=None, metadata={"flag": False})
    # each number column's (least, greatest) value in the training split, () for a category
    column_bounds: tuple[tuple[float, ...], ...] | None = field(default=None, metadata={"flag": False})

    def __post_init__(self) -> None:
        _require(bool(self.dataset), "--dataset is empty: give a built-in name or a path")
        _require(
            self.image_size is None or 4 <= self.image_size <= 1024,
            f"--image-size {self.image_size} is out of range: use a size from 4 to 1024",
        )
        _require(self.channels in (None, 1, 3), f"--channels {self.channels} is not supported: use 1 or 3")
        _require(self.val_size is None or self.val_size >= 0, f"--val-size {self.val_size} must be 0 or more")
        _require(
            self.train_limit is None or self.train_limit >= 1, f"--train-limit {self.train_limit} must be at least 1"
        )
        _require(
            not (self.binarize and self.pixel_range == "symmetric"),
            "--binarize needs --pixel-range unit: binary pixels are 0 or 1",
        )
        _require(not (self.binarize and self.dequantize), "--binarize and --dequantize exclude each other: choose one")
        _require(
            self.normal_classes is None or (len(self.normal_classes) > 0 and min(self.normal_classes) >= 0),
            f"--normal-classes {self.normal_classes} must name classes by their numbers, 0 or more, e.g. 3 or 0,6",
        )
        _require(
            (self.feature_mean is None) == (self.feature_std is None)
            and len(self.feature_mean or ()) == len(self.feature_std or ()),
            "data.feature_mean and data.feature_std go together, one value per feature",
        )
        _require(
            self.feature_std is None or all(math.isfinite(s) and s > 0 for s in self.feature_std),
            "data.feature_std must be positive numbers",
        )
        _require(
            self.column_kinds is None
            or (
                self.feature_names is not None
                and self.column_categories is not None
                and len(self.column_kinds) == len(self.feature_names) == len(self.column_categories)
            ),
            "data.column_kinds, column_categories and feature_names go together, one entry per column",
        )

    @property
    def is_table(self) -> bool:
        """The data is a table of vectors: its standardisation has been fitted (data/tables.py)."""
        return self.feature_mean is not None

    @property
    def binary_pixels(self) -> bool:
        """Every pixel the model sees is 0 or 1: binarised, or a set that is binary itself."""
        return self.binarize or self.dataset in BINARY_DATASETS

    @property
    def image_settings(self) -> list[str]:
        """The image-only settings this config uses (a table refuses them)."""
        flags = {
            "--binarize": self.binarize,
            "--dequantize": self.dequantize,
            "--pixel-range symmetric": self.pixel_range == "symmetric",
            "--image-size": self.image_size is not None,
            "--channels": self.channels is not None,
            f"--array-layout {self.array_layout}": self.array_layout != "auto",
        }
        return [flag for flag, used in flags.items() if used]


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = field(
        default="mlp",
        metadata=_help(
            "encoder/decoder family: mlp, conv, resnet, or your own factory as module.path:function "
            "(see vaekit.models.custom for its contract; loading such a run needs --trust-code)"
        ),
    )
    latent_dim: int = field(
        default=20,
        metadata=_help(
            "size Z of the latent code; 0: no latent at all, the decoder a learned constant (with "
            "--pixel-context-layers, a pixel-by-pixel model alone: the baseline that shows what a latent adds)"
        ),
    )
    hidden_sizes: tuple[int, ...] = field(default=(400,), metadata=_help("mlp hidden layer sizes, e.g. 400 or 512,256"))
    conv_channels: tuple[int, ...] = field(
        default=(32, 64), metadata=_help("conv encoder channels per layer, e.g. 8,16,32")
    )
    conv_strides: tuple[int, ...] = field(default=(2, 2), metadata=_help("conv encoder stride per layer, e.g. 2,2,2"))
    kernel_size: int = field(default=3, metadata=_help("conv kernel size (odd)"))
    res_blocks: int = field(default=1, metadata=_help("resnet only: residual blocks per stage"))
    activation: Activation = field(default="relu", metadata=_help("hidden activation"))
    stochastic_layers: int = field(
        default=1,
        metadata=_help("1, or 2: a ladder of z1 (--latent-dim) under z2 (--top-latent-dim), top-down inference"),
    )
    top_latent_dim: int = field(default=16, metadata=_help("2 stochastic layers only: size of the top latent z2"))
    top_hidden_size: int = field(
        default=256, metadata=_help("2 stochastic layers only: width of the MLPs between z1 and z2")
    )
    pixel_context_layers: int = field(
        default=0,
        metadata=_help(
            "0: pixels independent given z; N >= 1: an autoregressive head of N masked convolutions makes each "
            "pixel depend also on nearby pixels above and to its left (PixelVAE-style; sampling is pixel by pixel)"
        ),
    )
    pixel_context_channels: int = field(
        default=32, metadata=_help("pixel-context head only: channels of its masked convolutions")
    )
    conditional: bool = field(
        default=False,
        metadata=_help(
            "a conditional VAE: each item's label goes into the encoder and the decoder, so `vaekit sample "
            "--label K` draws class K (needs labels: a built-in set, sub-folders, an npz's y, --label-column)"
        ),
    )
    # How many classes a conditional model's one-hot label has: read from the data when the run
    # starts (like a table's scaling) and stored with it. Not a flag.
    classes: int = field(default=0, metadata={"flag": False})
    class_names: tuple[str, ...] | None = field(default=None, metadata={"flag": False})

    def __post_init__(self) -> None:
        _require(
            self.architecture in typing.get_args(Architecture) or FACTORY_NAME.fullmatch(self.architecture) is not None,
            f"--architecture {self.architecture!r} is not known: use mlp, conv, resnet, or your own factory as "
            "module.path:function",
        )
        _require(self.latent_dim >= 0, f"--latent-dim {self.latent_dim} must be 0 or more")
        _require(
            self.latent_dim > 0 or self.stochastic_layers == 1,
            "--latent-dim 0 has no latent to stack: use --stochastic-layers 1",
        )
        _require(all(size >= 1 for size in self.hidden_sizes), f"--hidden-sizes {self.hidden_sizes} must all be >= 1")
        _require(len(self.conv_channels) >= 1, "--conv-channels needs at least one layer")
        _require(all(c >= 1 for c in self.conv_channels), f"--conv-channels {self.conv_channels} must all be >= 1")
        _require(
            len(self.conv_channels) == len(self.conv_strides),
            f"--conv-channels has {len(self.conv_channels)} layers but --conv-strides has "
            f"{len(self.conv_strides)}: give one stride per layer",
        )
        _require(all(s in (1, 2) for s in self.conv_strides), "--conv-strides must each be 1 or 2")
        _require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"--kernel-size {self.kernel_size} must be a positive odd number",
        )
        _require(self.res_blocks >= 0, f"--res-blocks {self.res_blocks} must be >= 0")
        _require(
            self.stochastic_layers in (1, 2),
            f"--stochastic-layers {self.stochastic_layers} is not supported: use 1 or 2",
        )
        _require(self.top_latent_dim >= 1, f"--top-latent-dim {self.top_latent_dim} must be at least 1")
        _require(self.top_hidden_size >= 1, f"--top-hidden-size {self.top_hidden_size} must be at least 1")
        _require(
            self.pixel_context_layers >= 0, f"--pixel-context-layers {self.pixel_context_layers} must be 0 or more"
        )
        _require(
            self.pixel_context_channels >= 1,
            f"--pixel-context-channels {self.pixel_context_channels} must be at least 1",
        )
        _require(
            not (self.conditional and FACTORY_NAME.fullmatch(self.architecture)),
            "--conditional builds the label into vaekit's own networks, not into a factory's: use --architecture "
            "mlp, conv or resnet",
        )
        _require(self.classes == 0 or self.classes >= 2, f"model.classes {self.classes} must be 0 or at least 2")
        _require(
            self.class_names is None or len(self.class_names) == self.classes,
            f"model.class_names names {len(self.class_names or ())} classes but model.classes is {self.classes}",
        )


TRACKERS = ("mlflow", "wandb")


@dataclass(frozen=True)
class TrackerChoice:
    kind: str  # mlflow or wandb
    target: str | None  # MLflow's tracking URI, W&B's project; None: the package's own default


def flat_settings(config: RunConfig) -> dict[str, Any]:
    """The run's settings as `section.name` -> value, as trackers and model cards show them."""
    flat: dict[str, Any] = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            flat.update({f"{section}.{name}": value for name, value in values.items()})
        else:
            flat[section] = values
    return flat


def parse_track(values: Sequence[str]) -> list[TrackerChoice]:
    """`mlflow`, `mlflow:sqlite:///runs.db`, `wandb`, `wandb:my-project` -> the trackers, each once."""
    chosen: dict[str, TrackerChoice] = {}
    for value in values:
        kind, _, target = value.strip().partition(":")
        if kind not in TRACKERS:
            raise VaekitError(
                f"--track {value!r}: unknown tracker {kind!r}; use mlflow[:TRACKING_URI] or wandb[:PROJECT]"
            )
        if kind in chosen:
            raise VaekitError(f"--track names {kind} twice: give it once")
        chosen[kind] = TrackerChoice(kind, target or None)
    return list(chosen.values())


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=10, metadata=_help("passes over the training set"))
    max_steps: int = field(
        default=0,
        metadata=_help("stop after N optimiser steps, mid-epoch if need be (0: the epochs decide); papers count steps"),
    )
    batch_size: int = field(default=128, metadata=_help("images per optimiser step"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate (the peak one under a schedule)"))
    lr_schedule: LrSchedule = field(
        default="constant", metadata=_help("constant, or cosine: decay from --lr to 0 over the run, per step")
    )
    iwae_samples: int = field(
        default=5, metadata=_help("importance samples K per image for iwae and ciwae; per group for miwae and piwae")
    )
    beta: float = field(default=1.0, metadata=_help("weight of the KL term (1 = the true ELBO)"))
    warmup_steps: int = field(default=0, metadata=_help("linear KL warm-up from 0 to beta over N steps"))
    free_bits: float = field(
        default=0.0,
        metadata=_help(
            "minimum KL in nats per latent dimension (0 = off); where the KL does not split by dimension "
            "(--posterior iaf, vmf), each layer's KL gets the floor times its size"
        ),
    )
    prior_epochs: int = field(
        default=0,
        metadata=_help(
            "--posterior vq: after the autoencoder, train the prior over its codes for N epochs, so the run can "
            "sample (0: later, with vaekit train-prior)"
        ),
    )
    prior_lr: float | None = field(
        default=None,
        metadata=_help("--prior-epochs: the prior phase's Adam learning rate (default: --lr; train-prior's is 1e-3)"),
    )
    seed: int = field(default=0, metadata=_help("seed for weights, batches, noise"))
    device: str = field(default="auto", metadata=_help("auto (CUDA when present), cpu, cuda, cuda:N"))
    eval_batch_size: int = field(default=1000, metadata=_help("batch size for validation and test passes"))
    early_stopping: int = field(
        default=0, metadata=_help("stop when validation -ELBO has not improved for N epochs (0: off)")
    )
    precision: Precision = field(
        default="fp32", metadata=_help("bf16: matrix products in bfloat16 (autocast); the ELBO itself stays fp32")
    )
    checkpoint_every: int = field(
        default=500, metadata=_help("save a resumable checkpoint every N steps (0: only at epoch ends)")
    )
    clip_grad_norm: float | None = field(default=None, metadata=_help("clip the gradient norm to this (default off)"))
    max_bad_steps: int = field(
        default=20, metadata=_help("stop after this many non-finite steps in a row (each one is skipped)")
    )
    tensorboard: str | None = field(
        default=None,
        metadata=_help(
            "also write TensorBoard event files to this folder: per-step loss and its parts, per-epoch KL per "
            "dimension, active units, pictures (needs: pip install tensorboard)"
        ),
    )
    track: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "also log the run to experiment trackers: mlflow[:TRACKING_URI], wandb[:PROJECT], or both "
            "(comma-separated); settings, figures with their units, pictures and the run folder (needs: pip install "
            "mlflow-skinny or wandb)"
        ),
    )

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"--epochs {self.epochs} must be at least 1")
        parse_track(self.track)
        _require(self.max_steps >= 0, f"--max-steps {self.max_steps} must be >= 0 (0: the epochs decide)")
        _require(self.batch_size >= 1, f"--batch-size {self.batch_size} must be at least 1")
        _require(math.isfinite(self.lr) and self.lr > 0, f"--lr {self.lr} must be a positive number")
        _require(math.isfinite(self.beta) and self.beta >= 0, f"--beta {self.beta} must be >= 0")
        _require(self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps} must be >= 0")
        _require(self.early_stopping >= 0, f"--early-stopping {self.early_stopping} must be >= 0")
        _require(self.iwae_samples >= 1, f"--iwae-samples {self.iwae_samples} must be at least 1")
        _require(self.prior_epochs >= 0, f"--prior-epochs {self.prior_epochs} must be 0 or more")
        _require(
            self.prior_lr is None or (math.isfinite(self.prior_lr) and self.prior_lr > 0),
            f"--prior-lr {self.prior_lr} must be a positive number, e.g. 1e-3",
        )
        _require(math.isfinite(self.free_bits) and self.free_bits >= 0, f"--free-bits {self.free_bits} must be >= 0")
        _require(self.eval_batch_size >= 1, f"--eval-batch-size {self.eval_batch_size} must be at least 1")
        _require(self.checkpoint_every >= 0, f"--checkpoint-every {self.checkpoint_every} must be >= 0")
        _require(
            self.clip_grad_norm is None or (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0),
            f"--clip-grad-norm {self.clip_grad_norm} must be a positive number",
        )
        _require(self.max_bad_steps >= 1, f"--max-bad-steps {self.max_bad_steps} must be at least 1")
        _require(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            f"--device {self.device!r} is not known: use auto, cpu, cuda or cuda:N",
        )


# The settings of [train] that only an objective offering "kl_schedule" (the ELBO) reads.
KL_SCHEDULE = ("beta", "warmup_steps", "free_bits")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    # The methods the run uses, each with its own settings (vaekit/methods.py).
    objective: MethodChoice = field(default_factory=functools.partial(default_choice, "objective"))
    posterior: MethodChoice = field(default_factory=functools.partial(default_choice, "posterior"))
    prior: MethodChoice = field(default_factory=functools.partial(default_choice, "prior"))
    likelihood: MethodChoice = field(default_factory=functools.partial(default_choice, "likelihood"))
    preset: str | None = None

    def __post_init__(self) -> None:
        # Rules that span sections. resolve() merges its layers before building, so one layer may
        # fix what another broke; only the finished combination is checked.
        _require(
            self.data.val_size != 0 or self.train.early_stopping == 0,
            "--early-stopping watches the validation set: give --val-size N (N >= 1) or leave --early-stopping out",
        )
        _require(
            "factorised_prior" in self.prior.spec.offers or self.train.free_bits == 0.0,
            "--free-bits needs the KL per latent dimension, which only --prior standard has in closed form",
        )
        check_methods(self)

    @property
    def offers(self) -> frozenset[str]:
        """The capabilities the model, its posterior family and its prior offer an objective."""
        family, prior = self.posterior.spec.offers, self.prior.spec.offers
        # a family with a prior of its own (the sphere's, the codes') takes no factorised N(0, I)
        return family | model_offers(self.model) | (prior if "own_prior" not in family else frozenset())

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data: each section's settings, and for each kind of method only
        the one used, `{"name": ..., **its settings}`."""
        raw: dict[str, Any] = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        for kind in METHOD_SECTIONS:
            raw[kind] = getattr(self, kind).to_dict()
        raw["preset"] = self.preset
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Inverse of `to_dict`; unknown keys are an error so a typo never passes silently. A config
        written before the methods were plug-ins (every method's settings, flat) is read too."""
        known = {*SECTIONS, *METHOD_SECTIONS, "preset"}
        unknown = set(raw) - known
        _require(not unknown, f"unknown config section(s) {sorted(unknown)}: use {SECTION_LIST}")
        sections = {name: dict(raw.get(name) or {}) for name in (*SECTIONS, *METHOD_SECTIONS)}
        return with_overrides(cls(), upgrade_sections(sections, saved=True), preset=raw.get("preset"))


def model_offers(model: ModelConfig) -> frozenset[str]:
    """What the model's structure offers, beside its posterior family's and prior's capabilities."""
    offers = set()
    if model.stochastic_layers == 1:
        offers.add("one_layer")
    if model.latent_dim >= 1:
        offers.add("latent")
    return frozenset(offers)


def data_offers(data: DataConfig) -> frozenset[str]:
    """What the data, as prepared, offers a likelihood."""
    if data.binarize:
        return frozenset()
    return frozenset({"symmetric_pixels" if data.pixel_range == "symmetric" else "unit_grey_pixels"})


def _missing(flag: str, needs: frozenset[str], offers: frozenset[str], hint_kind: str | None = "posterior") -> None:
    for need in sorted(needs - offers):
        offering = providers(hint_kind, need) if hint_kind is not None else []
        hint = f" ({KINDS[hint_kind].flag} {' or '.join(offering)})" if hint_kind is not None and offering else ""
        raise VaekitError(f"{flag} {CAPABILITIES[need]}{hint}")


def _kl_schedule_given(train: TrainConfig) -> list[str]:
    """The flags of the KL schedule set away from their defaults."""
    default = TrainConfig()
    return ["--" + name.replace("_", "-") for name in KL_SCHEDULE if getattr(train, name) != getattr(default, name)]


def check_likelihood(config: RunConfig) -> None:
    """The likelihood's needs against the data, and --dequantize against what the likelihood is."""
    likelihood = config.likelihood.spec
    name = f"--likelihood {likelihood.name}"
    _missing(name, likelihood.needs, data_offers(config.data), hint_kind=None)
    _require(
        not config.data.dequantize or "density" in likelihood.offers,
        f"--dequantize is for continuous likelihoods ({', '.join(providers('likelihood', 'density'))}); {name} "
        "already models the pixels' values: leave --dequantize out",
    )
    if likelihood.check is not None:
        likelihood.check(config.likelihood.settings, config)


def check_methods(config: RunConfig) -> None:
    """Every rule between the objective, the posterior family, the prior and the rest, from their specs."""
    check_likelihood(config)
    model, train = config.model, config.train
    family, objective, prior = config.posterior.spec, config.objective.spec, config.prior.spec
    where = f"--posterior {family.name}"
    _missing(where, family.needs, model_offers(model))
    _require(
        "own_prior" not in family.offers or prior.name == KINDS["prior"].default,
        f"{where} has its own prior: leave out --prior",
    )
    _missing(f"--prior {prior.name}", prior.needs, model_offers(model) | family.offers)
    if prior.check is not None:
        prior.check(config.prior.settings, config)
    if "own_objective" in family.offers:
        _require(
            objective.name == KINDS["objective"].default,
            f"--objective {objective.name} does not apply to {where}, which trains with a loss of its own: leave "
            "out --objective",
        )
        changed = _kl_schedule_given(train)
        _require(
            not changed,
            f"{where} trains without a KL term (its rate is fixed while the autoencoder trains): leave out "
            + ", ".join(changed),
        )
    _require(
        "prior_phase" in family.offers or train.prior_epochs == 0,
        f"--prior-epochs trains a posterior family's own prior (--posterior "
        f"{' or '.join(providers('posterior', 'prior_phase'))}): {where} has none; leave it out",
    )
    _require(
        train.prior_lr is None or train.prior_epochs > 0,
        "--prior-lr is the learning rate of the prior phase that --prior-epochs asks for: give both, or neither",
    )
    if family.check is not None:
        family.check(config.posterior.settings, config)
    name = f"--objective {objective.name}"
    _missing(name, objective.needs, config.offers)
    _require(
        train.batch_size >= objective.min_batch,
        f"{name} estimates over the batch and needs --batch-size {objective.min_batch} or more",
    )
    _require(
        "kl_schedule" in objective.offers or not _kl_schedule_given(train),
        f"{name} has weights of its own: --beta, --warmup-steps and --free-bits apply to --objective "
        f"{KINDS['objective'].default} only",
    )
    if objective.check is not None:
        objective.check(config.objective.settings, config)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
}
# The sections that hold one method each: {"name": ..., **its settings}.
METHOD_SECTIONS = tuple(KINDS)
SECTION_LIST = "[data], [model], [train], [objective], [posterior], [prior], [likelihood]"
# Where a config written before the plug-ins kept each method's name: [train] objective,
# [model] posterior, prior and likelihood; its settings were flat in [objective] and [model], under their flag keys.
LEGACY_NAME = {"objective": "train", "posterior": "model", "prior": "model", "likelihood": "model"}


def upgrade_sections(sections: dict[str, dict[str, Any]], saved: bool = False) -> dict[str, dict[str, Any]]:
    """Move the method names and settings of a config in the form written before the plug-ins
    (`[train] objective`, `[model] posterior`, each method's settings flat under their flag keys)
    into the method sections. A `saved` config held every method's settings, the unused ones at
    their defaults of the time: those are left out (were a default to change, they would read as a
    user's choice); elsewhere (a TOML file, a preset) a setting of an unused method is refused."""
    sections = {name: dict(values) for name, values in sections.items()}
    for kind, home in LEGACY_NAME.items():
        old, method = sections.setdefault(home, {}), sections.setdefault(kind, {})
        legacy = legacy_keys(kind)
        moved = [key for key in old if key in legacy and key not in field_types(home)]
        for key in moved:
            method[key] = old.pop(key)
        old_form = kind in old or (saved and "name" not in method)
        if kind in old:
            _require(
                "name" not in method or method["name"] == old[kind],
                f"[{home}] {kind} = {old[kind]!r} and [{kind}] name = {method.get('name')!r} disagree: keep one",
            )
            method["name"] = old.pop(kind)
        if saved and old_form:
            name = method.setdefault("name", KINDS[kind].default)
            for key in [key for key in method if key != "name" and name not in legacy.get(key, ())]:
                method.pop(key)
    return sections


def _coerce(section: str, name: str, annotation: Any, value: Any) -> Any:
    """Turn a TOML/JSON/flag value into the field's type, or explain what was expected."""
    where = f"{section}.{name}"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None:
        _require(type(None) in args, f"{where} cannot be empty")
        return None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(section, name, inner[0], value)
    if origin is Literal:
        _require(value in args, f"{where} = {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple and typing.get_origin(args[0]) is tuple:  # tuple[tuple[str, ...], ...]
        _require(isinstance(value, (list, tuple)), f"{where} must be a list of lists")
        return tuple(_coerce(section, name, args[0], part) for part in value)
    if origin is tuple:
        element = args[0]  # tuple[int, ...], tuple[float, ...] or tuple[str, ...]
        kind = {int: "integers, e.g. 400,200", float: "numbers, e.g. 0.5,1.5", str: "names"}[element]
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        _require(isinstance(value, (list, tuple)), f"{where} must be a list of {kind}")
        try:
            return tuple(element(v) for v in value)
        except (TypeError, ValueError):
            raise VaekitError(f"{where} = {value!r} must be a list of {kind}") from None
    if annotation is bool:
        _require(isinstance(value, bool), f"{where} must be true or false")
        return value
    if annotation is int:
        _require(isinstance(value, int) and not isinstance(value, bool), f"{where} = {value!r} must be a whole number")
        return value
    if annotation is float:
        _require(
            isinstance(value, (int, float)) and not isinstance(value, bool), f"{where} = {value!r} must be a number"
        )
        return float(value)
    if annotation is str:
        _require(isinstance(value, str), f"{where} = {value!r} must be text")
        return value
    raise TypeError(f"no coercion for {annotation!r}")  # a vaekit bug, not user input


def field_types(section: str) -> dict[str, Any]:
    """The resolved type annotation of every field in a section."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce_setting(where: str, annotation: Any, value: Any) -> Any:
    section, name = where.split(".", 1)
    return _coerce(section, name, annotation, value)


def with_overrides(config: RunConfig, sections: dict[str, dict[str, Any]], preset: str | None = None) -> RunConfig:
    """Return `config` with the named fields of each section replaced (values are coerced); a
    method section names its method (`name`) and settings of that method only."""
    replaced: dict[str, Any] = {}
    for section, values in upgrade_sections(sections).items():
        if section in METHOD_SECTIONS:
            if values:
                replaced[section] = choose(getattr(config, section), values, _coerce_setting)
            continue
        _require(section in SECTIONS, f"unknown config section [{section}]: use {SECTION_LIST}")
        types_by_name = field_types(section)
        changes = {}
        for name, value in values.items():
            _require(
                name in types_by_name,
                f"unknown setting {section}.{name}: known ones are {', '.join(types_by_name)}",
            )
            changes[name] = _coerce(section, name, types_by_name[name], value)
        if changes:
            replaced[section] = dataclasses.replace(getattr(config, section), **changes)
    if preset is not None:
        replaced["preset"] = preset
    return dataclasses.replace(config, **replaced)
