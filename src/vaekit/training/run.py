"""A run folder: what `vaekit train` writes into it, and how an interrupted run is resumed.
(A finished run is loaded back by vaekit.loading.)

Layout of runs/NAME/:
    config.json               the resolved RunConfig (plus the data's image shape and source)
    metrics.jsonl             one JSON line per epoch; every number names its unit
    summary.json              test-set negative ELBO and its parts after the last epoch
    checkpoints/last.safetensors, checkpoints/best.safetensors (best validation negative ELBO)
    images/recon_epochNNN.png, images/samples_epochNNN.png
Every file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.atomic import read_json_lines, write_json, write_text
from vaekit.checkpoint import (
    RESUME_FORMAT,
    load_checkpoint,
    non_finite,
    parse_header,
    read_checkpoint,
    read_metadata,
    weights_mismatch,
    write_checkpoint,
)
from vaekit.config import ArrayLayout, RunConfig
from vaekit.data import DatasetSplits, ImageSet, load_dataset
from vaekit.data.memory import OWN_DATA_FILE, save_own_data
from vaekit.data.registry import BUILTIN_NAMES, as_item_set, split_own_data
from vaekit.data.tables import Table, with_table_scaling
from vaekit.devices import precision_advice, resolve_device
from vaekit.errors import VaekitError
from vaekit.loading import with_data_in_run
from vaekit.metrics.elbo import ElboSummary, set_figure
from vaekit.metrics.meaning import NO_ELBO, figure_description, figure_meaning, has_elbo, item_word
from vaekit.models import VAE, build_run_model
from vaekit.progress import write
from vaekit.tracking import Trackers
from vaekit.training.budget import check_fits
from vaekit.training.callbacks import PICTURE_SAMPLES, Callback, ConsoleReport, RunWriter
from vaekit.training.distributed import SINGLE, Cluster, from_main, start
from vaekit.training.loop import kept_weights, train_model
from vaekit.training.state import EVAL_SEED_OFFSET, Checkpointer, Snapshot
from vaekit.training.tensorboard import TensorBoardLogger, require_tensorboard
from vaekit.viz.grid import sample_grid, save_png


def claim_run_dir(out: str | Path, force: bool) -> Path:
    """Make `out` an empty run folder; an existing non-empty one needs `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaekitError(f"--out {out} is a file, not a folder: choose another --out")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise VaekitError(
                f"run folder {out} already exists and is not empty: choose another --out, or pass --force to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_out_free(out: str | Path, force: bool) -> None:
    """Fail early, before any work, if `out` would need --force."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        claim_run_dir(out, force)


def with_absolute_paths(config: RunConfig) -> RunConfig:
    """Dataset and TensorBoard paths made absolute, so a saved config works from any directory."""
    data, train = config.data, config.train
    dataset = data.dataset if data.dataset in BUILTIN_NAMES else str(Path(data.dataset).expanduser().absolute())
    data_dir = None if data.data_dir is None else str(Path(data.data_dir).expanduser().absolute())
    board = None if train.tensorboard is None else str(Path(train.tensorboard).expanduser().absolute())
    return dataclasses.replace(
        config,
        data=dataclasses.replace(data, dataset=dataset, data_dir=data_dir),
        train=dataclasses.replace(train, tensorboard=board),
    )


def with_classes(config: RunConfig, splits: DatasetSplits) -> RunConfig:
    """A conditional run's config with the number of classes its labels take (the class names',
    else the largest label's + 1); refuses data without labels, negative labels and one class."""
    sets = (splits.train, splits.val, splits.test)
    if any(part.labels is None and len(part) for part in sets):
        raise VaekitError(
            f"--conditional needs a label for every item, and {splits.source} has none: use a built-in set, class "
            "sub-folders, an .npz with y, or a table's --label-column (or train without --conditional)"
        )
    labels = np.concatenate([part.labels for part in sets if part.labels is not None])
    if labels.min() < 0:
        raise VaekitError(f"{splits.source} has the label {int(labels.min())}: labels must be 0, 1, 2, ...")
    classes = len(splits.class_names) if splits.class_names else int(labels.max()) + 1
    if classes < 2:
        raise VaekitError(f"--conditional needs at least 2 classes, and {splits.source} has 1: train without it")
    names = splits.class_names if splits.class_names else None
    return dataclasses.replace(config, model=dataclasses.replace(config.model, classes=classes, class_names=names))


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    test: ElboSummary
    wall_seconds: float


RESUME_FILE = "resume.safetensors"


def _snapshot_writer(run_dir: Path, config: RunConfig, image_shape: tuple[int, int, int]) -> Checkpointer:
    def write(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        write_checkpoint(run_dir / "checkpoints" / RESUME_FILE, tensors, config, image_shape, info, RESUME_FORMAT)

    return write


@dataclass(frozen=True)
class OwnData:
    """Data handed over from Python (data/memory.py), written into the run folder when it is made."""

    data: ImageSet | Table
    class_names: tuple[str, ...] | None = None


def train_run(
    config: RunConfig,
    out: str | Path,
    force: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    cluster: Cluster = SINGLE,
    own_data: OwnData | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Everything `vaekit train` does: load data, build, train, evaluate on test, write the run.

    All input is checked (data loaded, model built) before the run folder is touched, so a bad
    setting leaves nothing behind and never replaces an existing run. In a distributed run every
    rank calls this; rank 0 alone writes the folder, and every rank returns its result.
    `own_data` replaces config.data.dataset: it is split like a file of the user's and saved as
    the run's data.npz, which the config then names. `callbacks` are called after vaekit's own.
    """
    started = time.perf_counter()
    if config.train.tensorboard is not None:
        require_tensorboard()
    device = start(cluster, config.train.device)
    from_main(lambda: check_out_free(out, force), cluster)
    config, splits = _load_splits(config, out, own_data, progress and cluster.is_main)
    _check_batch_size(config, len(splits.train), cluster)
    check_fits(config, splits.shape, len(splits.train), device)
    torch.manual_seed(config.train.seed)  # weight initialisation (DDP then copies rank 0's to all)
    model = build_run_model(config, splits.shape, trust_code=True).to(device)  # the user named its network
    trackers = _start_trackers(config, Path(out), False, cluster)  # one that cannot start stops us here
    try:
        run_dir = from_main(lambda: _claim_and_describe(out, force, config, splits, own_data, cluster), cluster)
    except BaseException as error:
        if trackers is not None:
            trackers.abort(isinstance(error, KeyboardInterrupt))
        raise
    if trackers is not None:
        trackers.save_state(run_dir)
    if announce is not None and cluster.is_main:
        _announce_start(announce, config, splits, model, run_dir, device, cluster)
    try:
        return _train_and_summarise(
            model, splits, config, run_dir, progress, started, cluster=cluster, extra=callbacks, trackers=trackers
        )
    except Exception:
        if cluster.is_main:
            _remove_unresumable(run_dir)
        raise


def _remove_unresumable(run_dir: Path) -> None:
    """A run that failed before any step reached its weights can be neither resumed (to anything
    but the same failure) nor replaced without --force: take its folder away, so that the command
    can be run again as it is, or with other settings."""
    try:  # the snapshot's header says how far it got; its tensors need not be read
        step = int(json.loads(read_metadata(run_dir / "checkpoints" / RESUME_FILE, RESUME_FORMAT)["info"])["step"])
    except (VaekitError, KeyError, ValueError, TypeError):
        step = 0  # no snapshot, or none that can be read
    if step == 0:
        shutil.rmtree(run_dir, ignore_errors=True)


def _load_splits(
    config: RunConfig, out: str | Path, own_data: OwnData | None, progress: bool
) -> tuple[RunConfig, DatasetSplits]:
    """The run's splits, and its config completed from them (absolute paths, a table's scaling,
    a conditional run's classes)."""
    if own_data is not None:
        if config.data.array_layout != "auto":
            raise VaekitError(
                "array_layout applies to .npy/.npz files: data from Python is (N, C, H, W), PyTorch's order "
                "(permute a channels-last array first: x.transpose(0, 3, 1, 2))"
            )
        data_file = str((Path(out) / OWN_DATA_FILE).expanduser().absolute())
        data = own_data.data
        # data.npz keeps images channels-last (save_own_data): say so, so that no shape is ambiguous.
        layout: ArrayLayout = "auto" if isinstance(data, Table) else "nhwc"
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, dataset=data_file, array_layout=layout)
        )
        columns, schema = (data.columns, data.schema) if isinstance(data, Table) else (None, None)
        items = as_item_set(data, config.data, "the data")
        splits = split_own_data(items, config.data, "data from Python", data_file, own_data.class_names, columns)
        splits = dataclasses.replace(splits, schema=schema)
    else:
        splits = load_dataset(config.data, progress=progress)
    config = with_absolute_paths(config)
    if splits.is_table:
        config = with_table_scaling(config, splits.train.array, splits.table_schema)
    if config.model.conditional:
        config = with_classes(config, splits)
    return config, splits


def _check_batch_size(config: RunConfig, train_items: int, cluster: Cluster) -> None:
    if config.train.batch_size > train_items:
        raise VaekitError(
            f"--batch-size {config.train.batch_size} is larger than the {train_items} training images: "
            "lower --batch-size"
        )
    rest, least = train_items % config.train.batch_size, config.objective.spec.min_batch
    if 0 < rest < least and cluster.is_main:
        print(
            f"note: each epoch's last batch ({rest} of the {train_items} training items) is left out: --objective "
            f"{config.objective.name} needs batches of {least} or more",
            file=sys.stderr,
        )
    if config.train.batch_size < cluster.world_size:
        raise VaekitError(
            f"--batch-size {config.train.batch_size} is the global batch, split over {cluster.world_size} "
            "processes: make it at least the number of processes"
        )


def _claim_and_describe(
    out: str | Path, force: bool, config: RunConfig, splits: DatasetSplits, own_data: OwnData | None, cluster: Cluster
) -> Path:
    """Create the run folder (rank 0 only) with the data from Python and the resolved config."""
    run_dir = claim_run_dir(out, force)
    if own_data is not None:
        save_own_data(run_dir / OWN_DATA_FILE, own_data.data, own_data.class_names)
    write_json(
        run_dir / "config.json",
        {
            **config.to_dict(),
            "image_shape": list(splits.shape),
            "data_source": splits.source,
            "data_layout": splits.layout,
            "train_images": len(splits.train),
            "val_images": len(splits.val),
            "test_images": len(splits.test),
            "processes": cluster.world_size,
        },
    )
    return run_dir


def _announce_start(
    announce: Callable[[str], None],
    config: RunConfig,
    splits: DatasetSplits,
    model: VAE,
    run_dir: Path,
    device: torch.device,
    cluster: Cluster,
) -> None:
    processes = f", {cluster.world_size} processes" if cluster.active else ""
    item = item_word(config.data)
    what = f"{splits.shape[-1]} features" if splits.is_table else str(splits.shape)
    announce(
        f"training {config.preset or 'custom'} on {splits.name} ({len(splits.train)} {item}s of {what}, "
        f"device {device.type}{processes}): run folder {run_dir}"
    )
    notes = (
        layout_note(splits),
        figure_meaning(model.likelihood, config.data).advice
        if has_elbo(config.objective.name)
        else NO_ELBO.format(item=item),
        kept_weights(len(splits.val), item),
        precision_advice(config.train.precision, device),
    )
    for note in notes:
        if note is not None:
            announce(f"note: {note}")


def layout_note(splits: DatasetSplits) -> str | None:
    """How a .npy/.npz file's images were read, so that a misread array shows before training."""
    if splits.layout is None:
        return None
    how = {"nhw": "(N, H, W), one channel", "nhwc": "(N, H, W, C), channels last", "nchw": "(N, C, H, W), PyTorch's"}
    return f"read the images of {splits.source} as {how[splits.layout]} layout"


def _read_snapshot(run_dir: Path) -> tuple[dict[str, torch.Tensor], RunConfig, dict[str, Any]]:
    path = run_dir / "checkpoints" / RESUME_FILE
    if not path.is_file():
        raise VaekitError(
            f"{run_dir} has no {RESUME_FILE} to resume from: is it a vaekit run folder? "
            "(runs are resumable from their first checkpoint on)"
        )
    tensors, metadata = read_checkpoint(path, RESUME_FORMAT)
    config, _, info = parse_header(path, metadata)
    if not isinstance(info, dict) or "epoch" not in info or "step" not in info:
        raise VaekitError(f"{path} has a damaged header (no loop position): it cannot be resumed")
    return tensors, config, info


def _prepare_folder_for_resume(run_dir: Path, epoch: int) -> None:
    for leftover in run_dir.rglob(".*.tmp"):  # half-written files of the killed process
        leftover.unlink()
    # Epochs at or after the snapshot's are trained again: drop any line they already wrote.
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        kept = [record for record in read_json_lines(metrics) if record["epoch"] < epoch]
        write_text(metrics, "".join(json.dumps(record) + "\n" for record in kept))


def resume_run(
    run_dir: str | Path,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    cluster: Cluster = SINGLE,
    callbacks: Sequence[Callback] = (),
    trust_code: bool = False,
) -> TrainResult:
    """Continue an interrupted run from its last resumable snapshot, exactly where it stopped.
    A network built by user code needs `trust_code` (the snapshot alone imports nothing).

    Distributed: rank 0 reads the snapshot and hands it to the others, so only rank 0 needs the
    run folder. With the same number of processes the run continues bit for bit.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    # Sharing the snapshot needs the process group before anyone knows the run's --device: start
    # it for this machine's default and insist that the run agrees.
    device = start(cluster, "auto") if cluster.active else None
    tensors, config, info = from_main(lambda: _read_snapshot(run_dir), cluster)
    if device is None:
        device = start(cluster, config.train.device)
    elif resolve_device(config.train.device).type != device.type:
        raise VaekitError(
            f"{run_dir} trained with --device {config.train.device} but these processes use {device.type}: "
            'resume on the same kind of device (CUDA_VISIBLE_DEVICES="" hides the GPUs)'
        )
    config = with_data_in_run(config, run_dir)
    if config.train.tensorboard is not None:
        require_tensorboard()
    splits = load_dataset(config.data, progress=progress and cluster.is_main)
    model = build_run_model(config, splits.shape, trust_code, f"run {run_dir}").to(device)
    mismatch = weights_mismatch(model, tensors, prefix="model.") or non_finite(tensors)  # either: damaged
    if mismatch is not None:
        raise VaekitError(
            f"{run_dir / 'checkpoints' / RESUME_FILE} does not match its own config ({mismatch}): the file is "
            "damaged and cannot be resumed"
        )
    trackers = _start_trackers(config, run_dir, True, cluster)  # the same tracked runs as before
    if trackers is not None:
        trackers.save_state(run_dir)  # --track may name a tracker the run did not have before
    from_main(lambda: _prepare_folder_for_resume(run_dir, info["epoch"]), cluster)
    if announce is not None and cluster.is_main:
        announce(f"resuming {run_dir} at epoch {info['epoch']}, step {info['step']}")
    return _train_and_summarise(
        model,
        splits,
        config,
        run_dir,
        progress,
        started,
        resume=(tensors, info),
        cluster=cluster,
        extra=callbacks,
        trackers=trackers,
    )


def _train_and_summarise(
    model: VAE,
    splits: DatasetSplits,
    config: RunConfig,
    run_dir: Path,
    progress: bool,
    started: float,
    resume: Snapshot | None = None,
    cluster: Cluster = SINGLE,
    extra: Sequence[Callback] = (),
    trackers: Trackers | None = None,
) -> TrainResult:
    device = model.device
    callbacks = _callbacks(run_dir, config, splits, device, progress, resume, cluster) + list(extra)
    if trackers is not None:
        callbacks.append(trackers)
    checkpointer = _snapshot_writer(run_dir, config, splits.shape)  # train_model calls it on rank 0 only

    def evaluate_and_summarise() -> TrainResult:
        if "prior_phase" in config.posterior.spec.offers and config.train.prior_epochs > 0:
            _train_prior_phase(run_dir, config, device, progress)
        return _summarise_test(run_dir, config, splits, device, started)

    try:
        train_model(
            model,
            splits,
            config,
            callbacks=callbacks,
            progress=progress,
            checkpointer=checkpointer,
            resume=resume,
            cluster=cluster,
        )
        # Rank 0 evaluates while the others wait for its result: no rank leaves (and tears down the
        # process group) while another still uses it.
        result = from_main(evaluate_and_summarise, cluster)
    except BaseException as error:
        if trackers is not None:
            trackers.abort(isinstance(error, KeyboardInterrupt))
        raise
    if trackers is not None:
        trackers.finish(run_dir, _last_step(run_dir))
    return result


def _start_trackers(config: RunConfig, run_dir: Path, resuming: bool, cluster: Cluster) -> Trackers | None:
    """The run's experiment trackers, opened on rank 0 (None elsewhere, and without --track)."""
    if not config.train.track:
        return None
    opened: list[Trackers | None] = []
    from_main(lambda: opened.append(Trackers.start(config, run_dir, resuming)), cluster)
    return opened[0] if opened else None


def _last_step(run_dir: Path) -> int:
    """The optimiser steps the run took, from its last epoch's line in metrics.jsonl."""
    rows = read_json_lines(run_dir / "metrics.jsonl")
    return int(rows[-1].get("step", 0)) if rows else 0


def _callbacks(
    run_dir: Path,
    config: RunConfig,
    splits: DatasetSplits,
    device: torch.device,
    progress: bool,
    resume: Snapshot | None,
    cluster: Cluster,
) -> list[Callback]:
    """vaekit's own callbacks, on rank 0: the run folder's writer, the console, TensorBoard."""
    if not cluster.is_main:
        return []
    writer = RunWriter(run_dir, config, splits, device)
    callbacks: list[Callback] = [writer]
    if progress:
        callbacks.append(ConsoleReport(config.train.epochs))
    if config.train.tensorboard is not None:
        first_step = 0 if resume is None else int(resume[1]["step"])
        callbacks.append(
            TensorBoardLogger(config.train.tensorboard, config, splits, lambda: writer.latest_pictures, first_step)
        )
    return callbacks


def _summarise_test(
    run_dir: Path, config: RunConfig, splits: DatasetSplits, device: torch.device, started: float
) -> TrainResult:
    """The test set's figure with the weights that did best on validation (and, for a family with a
    prior phase, the prior trained for them), written to summary.json."""
    # trusted: this process built the network itself a moment ago
    best, _, info = load_checkpoint(run_dir / "checkpoints" / "best.safetensors", device, trust_code=True)
    labels = best.conditioning(splits.test.labels, "the test set")
    test = set_figure(
        best,
        splits.test.array,
        config.data,
        config.train.eval_batch_size,
        seed=config.train.seed,
        labels=labels,
        objective=config.objective.name,
    )
    wall = time.perf_counter() - started
    watched = "-ELBO" if has_elbo(config.objective.name) else "reconstruction cost"
    write_json(
        run_dir / "summary.json",
        {
            **test.to_dict(prefix="test_"),
            "checkpoint": "best",
            "best_epoch": info["epoch"],
            "kept": kept_weights(len(splits.val), test.item) or f"the epoch with the lowest validation {watched}",
            "wall_seconds": wall,
            "device": str(device),
            "figure_description": figure_description(
                best.likelihood, config.data, bool(best.classes), config.objective.name
            ),
            "units": f"nats per {test.item}" + ("; bits per dimension" if test.bits_per_dim is not None else ""),
        },
    )
    return TrainResult(run_dir, test, wall)


def _train_prior_phase(run_dir: Path, config: RunConfig, device: torch.device, progress: bool) -> None:
    """--prior-epochs: the posterior family's own prior (a VQ-VAE's over its codes), trained on the
    kept weights' codes by the phase its spec declares, then pictures of what the run now generates."""
    from vaekit.loading import load_run

    run = load_run(run_dir, "best", str(device), trust_code=True)
    say = (lambda line: write(line, file=sys.stderr)) if progress else (lambda line: None)
    phase = config.posterior.spec.hook("prior_phase")
    assert phase is not None  # config allows --prior-epochs only with a family that offers the phase
    lr = config.train.prior_lr if config.train.prior_lr is not None else config.train.lr
    say(phase(run, config.train.prior_epochs, force=True, lr=lr, seed=config.train.seed, say=say))
    if not config.data.is_table:
        generator = torch.Generator(device).manual_seed(config.train.seed + EVAL_SEED_OFFSET)
        drawn = run.model.sample(PICTURE_SAMPLES, generator)
        save_png(run_dir / "images" / "samples_prior.png", sample_grid(run.to_display(drawn)), scale=2)
