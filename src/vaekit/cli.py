"""The `vaekit` command: one thin function per sub-command over the library.

Config flags (--epochs, --latent-dim, ...) are generated from the config dataclasses, so every
setting has exactly one flag and one help text. User errors print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vaekit import methods
from vaekit.config import SECTIONS, field_types
from vaekit.errors import ReportedByRankZero, VaekitError
from vaekit.presets import PRESETS, preset_config, resolve

if TYPE_CHECKING:
    from vaekit.viz.gallery import PictureContext

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a SIGINT
# Kept here rather than imported so that `vaekit --help` does not load matplotlib and torch.
PICTURE_NAMES = (
    "curves",
    "reconstructions",
    "samples",
    "samples-drawn",
    "interpolations",
    "traversals",
    "latent-map",
    "manifold",
    "scores",
    "anomalies",
    "factors",
    "marginals",
)


# What add_subparsers returns; each _add_*_command below fills it with one or two commands.
Commands = argparse._SubParsersAction


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # One line, no usage dump: the message names the flag, --help gives the rest.
        self.exit(EXIT_USAGE, f"vaekit: error: {message} (see `{self.prog} --help`)\n")


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _flag_kwargs(annotation: Any) -> dict[str, Any]:
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        if inner is int:
            return {"type": _optional_int, "metavar": "N|none"}
        if inner is float:
            return {"type": _optional_float, "metavar": "X|none"}
        return {"type": str}
    if typing.get_origin(annotation) is Literal:
        return {"choices": list(args)}
    if typing.get_origin(annotation) is tuple:
        return {"type": str, "metavar": "N,N,..."}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": annotation}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} settings (override the preset and --config)")
        types_by_name = field_types(section)
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag", True) is False:  # set by vaekit itself (fitted), not by the user
                continue
            flag = "--" + f.name.replace("_", "-")
            kwargs = _flag_kwargs(types_by_name[f.name])
            if "metavar" not in kwargs and "choices" not in kwargs and "action" not in kwargs:
                kwargs["metavar"] = f.name.upper()  # not the internal dest "train.epochs"
            group.add_argument(
                flag, dest=f"{section}.{f.name}", default=argparse.SUPPRESS, help=f.metadata.get("help"), **kwargs
            )
    for kind in methods.KINDS.values():
        _add_method_flags(parser, kind)


def _add_method_flags(parser: argparse.ArgumentParser, kind: methods.Kind) -> None:
    """`--objective NAME` and one group of flags per method with settings, from the specs; a flag
    several methods share (--mmd-kernel: infovae and wae) is in the first one's group."""
    specs = methods.specs(kind.name)
    names = ", ".join(f"{name} ({spec.summary})" for name, spec in specs.items())
    parser.add_argument(
        kind.flag,
        dest=f"{kind.name}.name",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help=f"{kind.default} by default; {names}",
    )
    seen: set[str] = set()
    for spec in specs.values():
        fields = [f for f in spec.fields() if methods.flag_of(f) not in seen]
        if not fields:
            continue
        group = parser.add_argument_group(f"{kind.flag} {spec.name} settings (refused with a {kind.name} without them)")
        hints = dict(zip((f.name for f in spec.fields()), methods.setting_types(spec.settings), strict=True))
        for f in fields:
            flag = methods.flag_of(f)
            seen.add(flag)
            kwargs = _flag_kwargs(hints[f.name])
            if "metavar" not in kwargs and "choices" not in kwargs and "action" not in kwargs:
                kwargs["metavar"] = methods.key_of(f).upper()
            group.add_argument(
                "--" + flag,
                dest=f"{kind.name}.{methods.key_of(f)}",
                default=argparse.SUPPRESS,
                help=f.metadata.get("help"),
                **kwargs,
            )


def config_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config flags the user actually gave, grouped by section."""
    flags: dict[str, dict[str, Any]] = {section: {} for section in (*SECTIONS, *methods.KINDS)}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            flags[section][name] = value
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="vaekit", description="Train, inspect and sample Variational Autoencoders.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    _add_train_command(commands)
    _add_prior_command(commands)
    _add_image_commands(commands)
    _add_evaluation_commands(commands)
    _add_item_commands(commands)
    _add_impute_command(commands)
    _add_viewing_commands(commands)
    _add_listing_commands(commands)
    _add_study_commands(commands)
    return parser


def _add_train_command(commands: Commands) -> None:
    """`vaekit train`: the run's own flags, then one flag per config field."""
    train = commands.add_parser("train", help="train a VAE and write a run folder")
    train.add_argument("--preset", help=f"start from a named preset: {', '.join(PRESETS)}")
    train.add_argument("--config", type=Path, help="TOML file with [data], [model], [train] tables")
    train.add_argument("--out", type=Path, help="run folder to create (default: runs/<preset>-<time>)")
    train.add_argument("--force", action="store_true", help="replace an existing run folder")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--resume", type=Path, metavar="RUN", help="continue an interrupted run exactly where it stopped"
    )
    _add_trust_code(train)
    add_config_flags(train)
    train.set_defaults(handler=cmd_train)


def _add_prior_command(commands: Commands) -> None:
    """`vaekit train-prior`: a VQ-VAE's prior over its codes, after the autoencoder."""
    prior = commands.add_parser(
        "train-prior",
        help="train a VQ-VAE's prior over its codes, so that it can sample",
        description="Encode the run's training split to code maps and fit an autoregressive prior over them (a "
        "PixelCNN over codes). Saved beside the checkpoint after every epoch (RUN/checkpoints/code_prior.safetensors); "
        "sample, evaluate, report and serve then use it: -log p(x|codes) - log p(codes) is the run's bound.",
    )
    _add_run_arguments(prior)
    prior.add_argument("--epochs", type=int, default=10, help="passes over the training split's codes (default 10)")
    prior.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    prior.add_argument("--batch-size", type=int, help="code maps per step (default: the run's batch size)")
    prior.add_argument("--force", action="store_true", help="replace a prior trained before")
    prior.set_defaults(handler=cmd_train_prior)


def _add_image_commands(commands: Commands) -> None:
    """`sample` and `reconstruct`: PNG grids (a table's samples as rows)."""
    for name, what in (
        ("sample", "decode draws from the prior (a PNG grid; for a table's run, .csv or .npy rows)"),
        ("reconstruct", "a PNG grid of originals over their reconstructions"),
    ):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("--run", required=True, type=Path, help="run folder (or .safetensors checkpoint)")
        sub.add_argument("-n", type=int, default=64, help="number of images, or a table's rows (default 64)")
        out_help = "file to write (.png; a table's samples .csv or .npy)" if name == "sample" else "PNG file to write"
        sub.add_argument("--out", required=True, type=Path, help=out_help)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--checkpoint", choices=["best", "last"], default="best")
        sub.add_argument("--device", default="auto")
        sub.add_argument("--force", action="store_true", help="replace an existing output file")
        _add_trust_code(sub)
        if name == "reconstruct":
            sub.add_argument("--split", choices=["val", "test"], default="test")
        else:
            sub.add_argument(
                "--draw",
                action="store_true",
                help="draw each image from p(x|z), what the model generates (default: its mean E[x|z], smoother)",
            )
            sub.add_argument(
                "--label",
                help="conditional runs: draw this class (its index or name); default: every class in turn",
            )
            sub.add_argument(
                "--where",
                action="append",
                metavar="COLUMN=VALUE",
                help="a table's runs: only rows whose column holds this value (a category, boolean or integer), by "
                "rejection sampling with the acceptance rate reported; repeat for several conditions",
            )
        sub.set_defaults(handler=cmd_sample if name == "sample" else cmd_reconstruct)


def _add_evaluation_commands(commands: Commands) -> None:
    """`evaluate`: a run's figures on a split."""
    evaluate = commands.add_parser("evaluate", help="-ELBO and its IWAE bound in nats, active units, sample quality")
    _add_run_arguments(evaluate)
    evaluate.add_argument("--split", choices=["test", "val"], default="test")
    evaluate.add_argument("--k", type=int, default=1000, help="importance samples for the IWAE bound (default 1000)")
    evaluate.add_argument("--no-quality", action="store_true", help="skip the classifier-based sample quality")
    evaluate.add_argument("--images", type=int, help="only the first N images of the split (a quicker estimate)")
    evaluate.add_argument(
        "--disentanglement",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the disentanglement metrics (beta-VAE and FactorVAE scores, MIG, SAP, DCI); default: when the data has "
        "factors (dsprites, an npz with `factors`)",
    )
    evaluate.add_argument(
        "--dci-train",
        type=int,
        default=10_000,
        help="items DCI's classifiers fit on, half as many test them (default 10000, disentanglement_lib's)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)


def _add_item_commands(commands: Commands) -> None:
    """`encode` and `score`: one row per item of a data set."""
    encode = commands.add_parser(
        "encode",
        help="latent codes of data: per item its index, label, posterior mean and standard deviation",
        description="Write the posterior q(z|x) of every item: its mean and standard deviation per latent dimension "
        "(z2 and z1 for a two-layer model), with the item's index and label. Use the mean downstream (features, "
        "retrieval, plots): it is the posterior's best single estimate and the same on every call; the standard "
        "deviation says how sure the encoder is. A draw from q(z|x) would only add noise.",
    )
    _add_item_arguments(encode, "encode", "codes.npz (arrays) or codes.csv (one row per item)")
    encode.set_defaults(handler=cmd_encode)

    score = commands.add_parser(
        "score",
        help="anomaly scores per item: -ELBO, its IWAE bound, reconstruction error",
        description="Score every item: -ELBO and its IWAE bound in nats (-log p(x) where the likelihood is normalised; "
        "computed as `vaekit evaluate` computes them, so their means match it), and the mean squared reconstruction "
        "error. Higher is less typical. "
        "--threshold-fpr P sets a threshold on the --by score from the run's validation split, so that a fraction P "
        "of normal items is flagged, and marks each item. Likelihoods can rank unfamiliar data as more likely than "
        "familiar data (a known failure of likelihood-based detectors): check on data you know before trusting one.",
    )
    _add_item_arguments(score, "score", "scores.csv: one row per item")
    score.add_argument("--k", type=int, default=100, help="importance samples for the IWAE score (default 100)")
    score.add_argument(
        "--threshold-fpr", type=float, metavar="P", help="flag items above the validation split's 1-P quantile"
    )
    score.add_argument(
        "--by",
        choices=list(SCORE_NAMES),
        default="nelbo",
        help="the score a threshold uses; excess (Bernoulli runs): -ELBO minus the image's own cross-entropy floor "
        "H(x), the best of these on one-class Fashion-MNIST (docs: results/one-class)",
    )
    score.set_defaults(handler=cmd_score)


def _add_viewing_commands(commands: Commands) -> None:
    """`plot`, `report` and `serve`: pictures of a run, for files and the browser."""
    plot = commands.add_parser("plot", help="PNG pictures of what a run learned")
    _add_run_arguments(plot)
    plot.add_argument("what", nargs="+", choices=[*PICTURE_NAMES, "all"], help="which pictures")
    plot.add_argument("--out-dir", type=Path, help="folder for the PNGs (default: RUN/plots)")
    plot.set_defaults(handler=cmd_plot)

    report = commands.add_parser("report", help="one self-contained HTML report of a run")
    _add_run_arguments(report)
    report.add_argument("--k", type=int, default=1000, help="importance samples, if the run has no eval.json yet")
    report.add_argument("--out", type=Path, help="HTML file (default: RUN/report.html)")
    report.set_defaults(handler=cmd_report)

    serve = commands.add_parser("serve", help="explore a run's latent space in the browser")
    _add_run_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port)")
    serve.set_defaults(handler=cmd_serve)

    push = commands.add_parser("push", help="upload a finished run to the Hugging Face Hub, with its model card")
    push.add_argument("--run", required=True, type=Path, help="run folder written by `vaekit train`")
    push.add_argument("--repo", required=True, help="the Hub model to write: OWNER/NAME")
    push.add_argument(
        "--license", default="other", help="the license of the weights, as the Hub names them (default: other)"
    )
    push.add_argument("--code", type=Path, help="the module of a network built by user code (never sent unless named)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--dry-run", metavar="FOLDER", type=Path, help="write what would be uploaded here instead")
    push.set_defaults(handler=cmd_push)


def _add_listing_commands(commands: Commands) -> None:
    """`datasets` and `presets`: what is available."""
    datasets = commands.add_parser("datasets", help="where each built-in dataset is, or how to get it")
    datasets.add_argument("--data-dir", help="also look in this folder")
    datasets.set_defaults(handler=cmd_datasets)

    presets = commands.add_parser("presets", help="list the named presets and their settings")
    presets.add_argument("--json", action="store_true", help="print the full settings as JSON")
    presets.set_defaults(handler=cmd_presets)

    listing = commands.add_parser(
        "methods",
        help="list the objectives, posterior families, priors and likelihoods, plug-ins included, with their settings",
    )
    listing.add_argument("--markdown", action="store_true", help="as the docs' tables (docs/reference/methods.md)")
    listing.set_defaults(handler=cmd_methods)


def _add_study_arguments(parser: argparse.ArgumentParser, what: str, items: str) -> None:
    """What `sweep` and `tune` share: the study file, its folder, the workers and their threads."""
    parser.add_argument("study", type=Path, help=f"the {what} (TOML)")
    parser.add_argument("--out", type=Path, required=True, help="the study folder (created, or continued)")
    parser.add_argument("--workers", type=int, default=1, help=f"{items} trained at once on this machine (default 1)")
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)  # a worker's share, set by the command
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_study_commands(commands: Commands) -> None:
    """`sweep`, `tune` and `compare`: many runs from one study file, and runs side by side."""
    sweep = commands.add_parser(
        "sweep",
        help="train every combination of a study file's [grid] as run folders under one study folder",
        description="A study file is a run's TOML (a preset, [data], [model], [train], the method sections) plus "
        '[grid], the settings to vary: "train.lr" = [0.001, 0.003]. Each combination is an ordinary run folder '
        "under OUT/runs/. Killed at any moment and run again with the same command, it keeps the finished runs and "
        "resumes the interrupted ones exactly.",
    )
    _add_study_arguments(sweep, "study file", "runs")
    sweep.set_defaults(handler=cmd_sweep)

    tune = commands.add_parser(
        "tune",
        help="search a study file's [search] space for the best settings, on Optuna",
        description="A search study file is a run's TOML plus [search], ranges ({low = 1e-4, high = 1e-2, log = "
        "true}) or lists of choices, and [tune] (trials, metric, direction, seed, prune). Each trial is a run folder "
        "under OUT/runs/; hopeless trials are pruned from their epoch figures. Killed and run again, it resumes the "
        "interrupted trials exactly.",
    )
    _add_study_arguments(tune, "search study file", "trials")
    tune.add_argument("--trials", type=int, help="finished trials to reach (default: the file's [tune] trials)")
    tune.add_argument(
        "--storage", help="Optuna storage URL (default: sqlite:///OUT/optuna.db), e.g. postgresql://host/db"
    )
    tune.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # its index, for its sampler's seed
    tune.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds between a running trial's heartbeats in a database storage; after three missed, another "
        "worker resumes the trial (default 60)",
    )
    tune.set_defaults(handler=cmd_tune)

    compare = commands.add_parser(
        "compare",
        help="runs side by side: the settings that differ, every test figure (mean ± std over seeds)",
        description="One table of finished runs (run folders, or study folders: their runs): the settings that "
        "differ, each test figure with its unit and kind; runs that differ only by --seed become one row, mean ± "
        "standard deviation. Figures of different kinds (a likelihood, a cross-entropy) are never averaged together.",
    )
    compare.add_argument("paths", type=Path, nargs="+", help="run folders and study folders")
    compare.add_argument(
        "--out", type=Path, help="also write compare.md, compare.csv and compare.html (with its plots) here"
    )
    compare.set_defaults(handler=cmd_compare)


def cmd_sweep(args: argparse.Namespace) -> int:
    from vaekit.studies import sweep
    from vaekit.training.loop import TrainingInterrupted

    try:
        found = sweep(args.study, args.out, args.workers, progress=not args.quiet, threads=args.threads)
    except TrainingInterrupted as exc:
        print(f"vaekit: {exc}; continue with: vaekit sweep {args.study} --out {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.threads is None:  # the sweep itself, not one of its workers, reports
        print(found.table())
    return 1 if found.failed else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from vaekit.studies.tuning import tune
    from vaekit.training.loop import TrainingInterrupted

    try:
        result = tune(
            args.study,
            args.out,
            args.trials,
            args.workers,
            args.storage,
            progress=not args.quiet,
            threads=args.threads,
            worker=args.worker,
            heartbeat=args.heartbeat,
        )
    except TrainingInterrupted as exc:
        print(f"vaekit: {exc}; continue with: vaekit tune {args.study} --out {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.threads is None:  # the command itself, not one of its workers, reports
        print(result.table())
    return 0 if result.best is not None else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from vaekit.studies.comparison import compare, write_comparison

    comparison = compare(args.paths)
    print(comparison.to_markdown())
    if args.out is not None:
        for path in write_comparison(comparison, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.training import distributed
    from vaekit.training.loop import TrainingInterrupted
    from vaekit.training.run import resume_run, train_run

    cluster = distributed.cluster_from_env()  # one process unless started by torchrun

    def announce(line: str) -> None:
        print(line, file=sys.stderr)

    given = [name for name, values in config_flags(args).items() if values]
    if args.resume is not None:
        if given or args.preset or args.config or args.out:
            raise VaekitError(
                "--resume takes the run's own settings: give no other settings, --preset, --config or --out"
            )
        run_dir = args.resume
    else:
        config = resolve(preset=args.preset, config_file=args.config, flags=config_flags(args))
        run_dir = args.out or Path("runs") / f"{config.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        if args.resume is not None:
            result = resume_run(
                run_dir, progress=not args.quiet, announce=announce, cluster=cluster, trust_code=args.trust_code
            )
        else:
            result = train_run(
                config, run_dir, force=args.force, progress=not args.quiet, announce=announce, cluster=cluster
            )
        distributed.stop(together=True)
    except TrainingInterrupted as exc:
        if cluster.is_main:
            launcher = "torchrun ... -m vaekit train" if cluster.active else "vaekit train"
            print(f"vaekit: {exc}; continue with: {launcher} --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        distributed.stop()
    if not cluster.is_main:  # rank 0 reports
        return 0
    test = result.test
    print(f"test {test.line()}, {test.images} {test.item}s, wall time {result.wall_seconds:.1f} s")
    pictures = "" if test.item == "item" else "images/, "  # a table's run draws no pictures
    print(f"run folder: {result.run_dir}  (metrics.jsonl, summary.json, {pictures}checkpoints/)")
    return 0


def cmd_train_prior(args: argparse.Namespace) -> int:
    from vaekit.loading import load_run

    if args.epochs < 1:
        raise VaekitError(f"--epochs {args.epochs} must be at least 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise VaekitError(f"--lr {args.lr} must be a positive number")
    if args.batch_size is not None and args.batch_size < 1:
        raise VaekitError(f"--batch-size {args.batch_size} must be at least 1")
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    family = run.config.posterior.spec
    phase = family.hook("prior_phase")
    if phase is None:
        having = " or ".join(methods.providers("posterior", "prior_phase"))
        raise VaekitError(
            f"{run.path} is a --posterior {family.name} run, which has no prior of its own to train: train-prior is "
            f"for --posterior {having}"
        )
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    print(phase(run, args.epochs, force=args.force, lr=args.lr, batch_size=args.batch_size, seed=args.seed, say=say))
    return 0


ROW_SUFFIXES = (".csv", ".npy")  # what rows of a table are written as
SCORE_NAMES = ("nelbo", "iwae", "recon", "excess")  # metrics/scores.py SCORES, without importing torch


def _check_output(path: Path, force: bool, suffixes: tuple[str, ...] = (".png",)) -> None:
    if path.exists() and not force:
        raise VaekitError(f"{path} already exists: choose another --out or pass --force to replace it")
    if path.suffix.lower() not in suffixes:
        what = "this run's data is a table, so " if suffixes == ROW_SUFFIXES else ""
        raise VaekitError(f"{what}--out {path} must end in {' or '.join(suffixes)}")


MAX_ROWS = 10_000_000  # synthetic rows one `vaekit sample` writes


def _check_count(n: int, table: bool = False) -> None:
    if table and not 1 <= n <= MAX_ROWS:
        raise VaekitError(f"-n {n} is out of range: ask for 1 to {MAX_ROWS:,} rows")
    if not table and not 1 <= n <= 4096:
        raise VaekitError(f"-n {n} is out of range: ask for 1 to 4096 images")


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from vaekit.loading import load_run
    from vaekit.viz.grid import sample_grid, save_png

    _check_count(args.n, table=True)  # the widest range, before the run is read
    run = load_run(args.run, args.checkpoint, args.device, args.trust_code)
    _check_count(args.n, run.is_table)
    _check_output(args.out, args.force, ROW_SUFFIXES if run.is_table else (".png",))
    if run.is_table:
        return _sample_table(run, args)
    if args.where:
        raise VaekitError(f"--where picks a table's rows by their values, and {args.run} was trained on images")
    model = run.model
    labels = model.cycled_labels(args.n)  # (n,) every class in turn; None unconditional
    if args.label is not None:
        labels = torch.full((args.n,), run.label_index(args.label), device=model.device)
    generator = torch.Generator(model.device).manual_seed(args.seed)
    drawn = model.sample(args.n, generator, draw=args.draw, y=labels)
    save_png(args.out, sample_grid(run.to_display(drawn)), scale=2)
    what = "prior samples drawn from p(x|z)" if args.draw else "prior samples (E[x|z])"
    if labels is not None:
        what += f" of class {run.class_names[int(labels[0])]}" if args.label is not None else ", every class in turn"
    print(f"wrote {args.n} {what} to {args.out}")
    return 0


def _sample_table(run: Any, args: argparse.Namespace) -> int:
    """`vaekit sample` of a table's run: rows with its columns in their types, on --where's conditions."""
    from vaekit.rows import parse_conditions, sample_rows, write_table

    if run.model.classes:
        raise VaekitError(f"{args.run} is conditional on its label column: sample its rows with --where instead")
    conditions = parse_conditions(args.where or [], run.schema)
    columns, accepted = sample_rows(run, args.n, args.seed, args.draw, conditions)
    write_table(args.out, columns, run.schema)
    what = "rows drawn from p(x|z)" if args.draw else "rows at E[x|z] (each category its most probable value)"
    print(f"wrote {args.n} {what} to {args.out}, in the table's columns and units")
    if conditions:
        shown = " and ".join(f"{c.column}={c.value}" for c in conditions)
        print(f"--where {shown}: {accepted:.2%} of the draws met the conditions (rejection sampling)")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from vaekit.loading import load_run
    from vaekit.viz.grid import reconstruction_grid, save_png

    _check_count(args.n)
    _check_output(args.out, args.force)
    run = load_run(args.run, args.checkpoint, args.device, args.trust_code)
    if run.is_table:
        raise VaekitError(f"{args.run} was trained on a table: reconstruct draws images (evaluate gives its figures)")
    chosen = getattr(run.load_data(progress=False), args.split).take(slice(0, args.n))
    images = chosen.images
    labels = run.model.conditioning(chosen.labels, f"the {args.split} set")
    x = run.prepare(images, torch.Generator(run.model.device).manual_seed(args.seed))
    y = None if labels is None else torch.from_numpy(labels).to(run.model.device)
    save_png(args.out, reconstruction_grid(run.to_display(x), run.to_display(run.model.reconstruct(x, y))), scale=2)
    print(f"wrote {len(images)} {args.split} images over their reconstructions to {args.out}")
    return 0


def _add_trust_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="allow a run whose network is built by user code (--architecture module:function) to import it; "
        "only for runs whose origin you trust",
    )


def _add_impute_command(commands: Commands) -> None:
    """`impute`: a table's empty cells filled by the run's model."""
    impute = commands.add_parser(
        "impute",
        help="fill a table's empty cells with the run's model (MIWAE): the conditional mean, or --draws imputations",
        description="Fill every empty cell of a table with a run trained on such tables: numbers by their "
        "importance-weighted conditional mean under the model given the row's observed cells, categories by their "
        "most probable value (Mattei & Frellsen 2019, MIWAE); --draws M writes M multiple imputations instead, one "
        "after another with an `imputation` column (1 to M). Observed cells are written as they were.",
    )
    _add_run_arguments(impute)
    impute.add_argument(
        "--dataset", "--data", required=True, type=Path, help="the table (.csv) whose empty cells to fill"
    )
    impute.add_argument("--out", required=True, type=Path, help="the filled table (.csv)")
    impute.add_argument("--draws", type=int, default=0, help="M multiple imputations (default 0: one, the mean/mode)")
    impute.add_argument("--k", type=int, default=100, help="importance samples per row (default 100)")
    impute.add_argument("--force", action="store_true", help="replace an existing output file")
    impute.set_defaults(handler=cmd_impute)


def cmd_impute(args: argparse.Namespace) -> int:
    import pandas as pd

    from vaekit.atomic import write_text
    from vaekit.data.tables import read_frame
    from vaekit.loading import load_run
    from vaekit.rows import empty_cells, impute_frame

    _check_output(args.out, args.force, (".csv",))
    _check_k(args.k)
    if not 0 <= args.draws <= 1000:
        raise VaekitError(f"--draws {args.draws} is out of range: 0 (one imputation, the mean) to 1000")
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    frame = read_frame(args.dataset)
    empty = empty_cells(frame, run.schema)
    if empty == 0:
        write_text(args.out, frame.to_csv(index=False))
        print(
            f"{args.dataset} has no empty cell in the run's columns: nothing to impute; wrote it unchanged to "
            f"{args.out}"
        )
        return 0
    filled = impute_frame(run, frame, args.draws, args.k, args.seed)
    if args.draws:
        filled = [part.assign(imputation=number) for number, part in enumerate(filled, 1)]
        table = pd.concat(filled, ignore_index=True)
        table = table[["imputation", *frame.columns]]
    else:
        table = filled[0]
    write_text(args.out, table.to_csv(index=False))
    what = (
        f"{args.draws} imputations (drawn)" if args.draws else "their conditional mean (numbers) and mode (categories)"
    )
    print(f"filled {empty} empty cells of {len(frame)} rows with {what}, K = {args.k}: wrote {args.out}")
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, type=Path, help="run folder written by `vaekit train`")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    _add_trust_code(parser)


def _add_item_arguments(parser: argparse.ArgumentParser, verb: str, out_help: str) -> None:
    """What the per-item commands (encode, score) take besides the run."""
    _add_run_arguments(parser)
    parser.add_argument("--dataset", help=f"data to {verb}, every item in order (default: the run's own test split)")
    parser.add_argument(
        "--array-layout",
        choices=["auto", "nhwc", "nchw"],
        default="auto",
        help="how a 4-D .npy/.npz --dataset is laid out (auto: from its shape)",
    )
    parser.add_argument("--out", required=True, type=Path, help=out_help)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def _check_k(k: int) -> None:
    if not 1 <= k <= 100_000:
        raise VaekitError(f"--k {k} is out of range: use 1 to 100000 importance samples")


def _run_folder(path: Path) -> Path:
    if not path.is_dir():
        raise VaekitError(f"--run {path} is not a run folder: give the folder `vaekit train --out` created")
    return path


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.loading import load_run
    from vaekit.metrics.evaluation import collapse_warning, evaluate_run, format_table, save_evaluation

    _check_k(args.k)
    if args.images is not None and args.images < 1:
        raise VaekitError(f"--images {args.images} must be at least 1")
    if args.dci_train < 2:
        raise VaekitError(f"--dci-train {args.dci_train} must be at least 2 (half as many items test DCI)")
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    splits = run.load_data()
    if len(getattr(splits, args.split)) == 0:
        raise VaekitError(f"{args.run} was trained with no {args.split} set (--val-size 0): evaluate --split test")
    result = evaluate_run(
        run,
        splits,
        args.split,
        args.k,
        args.seed,
        quality=not args.no_quality,
        limit=args.images,
        factors=args.disentanglement,
        dci_train=args.dci_train,
    )
    print(format_table(result))
    warning = collapse_warning(result)
    if warning:
        print(warning, file=sys.stderr)
    print(f"wrote {save_evaluation(args.run, result)}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from vaekit.codes import CODE_SUFFIXES, encode_items, write_codes
    from vaekit.loading import load_run

    _check_output(args.out, args.force, CODE_SUFFIXES)
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    if run.model.latent_dim == 0:
        raise VaekitError(f"{args.run} has no latent space to encode into (--latent-dim 0)")
    items, labels = run.items_of(args.dataset, array_layout=args.array_layout)
    given = run.model.conditioning(labels, args.dataset or "the test split")
    codes = encode_items(run.model, items, run.config.data, seed=args.seed, labels=given)
    write_codes(args.out, codes, labels)
    what = args.dataset or "the run's test split"
    columns = ", ".join(f"{name} ({array.shape[1]})" for name, array in codes.arrays().items())
    print(f"wrote the codes of {len(items)} items of {what} to {args.out}: {columns}")
    return 0


def _check_has_elbo(objective: str) -> None:
    from vaekit.metrics.meaning import has_elbo

    if not has_elbo(objective):
        raise VaekitError(
            f"vaekit score ranks items by their -ELBO, and a run trained with --objective {objective} has none "
            "(a deterministic encoder): its reconstruction cost per set is in vaekit evaluate"
        )


def cmd_score(args: argparse.Namespace) -> int:
    from vaekit.loading import load_run
    from vaekit.metrics.scores import check_fpr, score_by, score_items, threshold_at_fpr, write_scores

    _check_output(args.out, args.force, (".csv",))
    _check_k(args.k)
    if args.threshold_fpr is not None:
        check_fpr(args.threshold_fpr)  # before any work
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    _check_has_elbo(run.config.objective.name)
    threshold = None
    if args.threshold_fpr is not None:
        validation = run.load_data().val  # only the score the threshold is on
        val_labels = run.model.conditioning(validation.labels, "the validation split")
        val_scores = score_by(args.by, run.model, validation.array, run.config.data, args.k, args.seed, val_labels)
        threshold = threshold_at_fpr(val_scores, args.threshold_fpr)
    items, labels = run.items_of(args.dataset, array_layout=args.array_layout)
    given = run.model.conditioning(labels, args.dataset or "the test split")
    scores = score_items(run.model, items, run.config.data, args.k, args.seed, given)
    flagged = None if threshold is None else scores.by(args.by) > threshold
    write_scores(args.out, scores, labels, flagged)
    what = args.dataset or "the run's test split"
    print(f"wrote the scores of {len(items)} items of {what} to {args.out}")
    if flagged is not None:
        print(
            f"threshold on {args.by}: {threshold:.4g} (validation false-positive rate {args.threshold_fpr:g}); "
            f"{int(flagged.sum())} of {len(items)} items flagged as anomalous"
        )
    return 0


def _draw_all(ctx: PictureContext, names: list[str], out_dir: Path) -> dict[str, Path]:
    from vaekit.viz.gallery import draw

    return {name: draw(ctx, name, out_dir / f"{name}.png") for name in names}


def _every_picture(ctx: PictureContext) -> list[str]:
    from vaekit.viz.gallery import drawable

    return drawable(ctx, list(PICTURE_NAMES))


def _load_for_pictures(args: argparse.Namespace) -> PictureContext:
    from vaekit.loading import load_run
    from vaekit.viz.gallery import PictureContext

    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    return PictureContext(run, run.load_data(), args.seed)


def cmd_plot(args: argparse.Namespace) -> int:
    ctx = _load_for_pictures(args)
    names = _every_picture(ctx) if "all" in args.what else list(dict.fromkeys(args.what))
    out_dir = args.out_dir or _run_folder(args.run) / "plots"
    for name, path in _draw_all(ctx, names, out_dir).items():
        print(f"{name:16s} {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vaekit.atomic import read_json
    from vaekit.metrics.evaluation import evaluate_run, save_evaluation
    from vaekit.viz.report import build_report, write_report

    ctx = _load_for_pictures(args)
    eval_path = args.run / "eval.json"
    if eval_path.is_file():
        evaluation = read_json(eval_path, f": delete it and run vaekit report --run {args.run} again")
    else:
        print(f"no {eval_path} yet: evaluating with K={args.k} first", file=sys.stderr)
        evaluation = evaluate_run(ctx.run, ctx.splits, "test", args.k, args.seed)
        save_evaluation(args.run, evaluation)
    pictures = _draw_all(ctx, _every_picture(ctx), args.run / "plots")
    out = args.out or args.run / "report.html"
    write_report(out, build_report(args.run, ctx.run.config, evaluation, pictures))
    print(f"wrote {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from vaekit.hub import parse_hub_name, push, stage

    run_dir = _run_folder(args.run)
    if args.dry_run is not None:
        repo, _ = parse_hub_name(f"hf://{args.repo}")
        if args.dry_run.exists():
            raise VaekitError(f"--dry-run {args.dry_run} already exists: give a new folder")
        staged = stage(run_dir, repo, args.license, args.code)
        shutil.move(staged, args.dry_run)
        files = sorted(str(p.relative_to(args.dry_run)) for p in args.dry_run.rglob("*") if p.is_file())
        print(f"would upload {len(files)} files to {repo}: {', '.join(files)} (written to {args.dry_run})")
        return 0
    url = push(run_dir, args.repo, args.license, args.code, args.private)
    print(f"pushed {run_dir} to {args.repo} ({url}); load it with vaekit.load_run('hf://{args.repo}')")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vaekit.loading import load_run
    from vaekit.serve.explorer import LatentExplorer
    from vaekit.serve.server import make_server

    if not 0 <= args.port <= 65535:
        raise VaekitError(f"--port {args.port} is not a port number: use 1 to 65535 (or 0 for any free port)")
    run = load_run(_run_folder(args.run), args.checkpoint, args.device, args.trust_code)
    if run.model.latent_dim == 0:
        raise VaekitError(f"{args.run} has no latent space to explore (--latent-dim 0)")
    explorer = LatentExplorer(run, run.load_data(), args.seed)
    try:
        server = make_server(explorer, args.host, args.port)
    except OSError as exc:
        raise VaekitError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): pass another --port or --host"
        ) from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vaekit: listening on {args.host}: anyone who can reach this machine can use the model", file=sys.stderr)
    print(f"serving {args.run} at http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from vaekit.data import describe_builtins

    for name, where in describe_builtins(args.data_dir):
        print(f"{name:15s} {where}")
    print("own data        --dataset PATH: a folder of .png/.jpg (sub-folders = labels), or a .npy/.npz array")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({name: preset_config(name).to_dict() for name in PRESETS}, indent=2))
        return 0
    for name, preset in PRESETS.items():
        print(f"{name}\n  {preset.summary}")
        for section, values in preset.sections.items():
            settings = ", ".join(
                f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in values.items()
            )
            print(f"  [{section}] {settings}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    for kind in methods.KINDS:
        if args.markdown:
            print(methods.markdown_table(kind))
            continue
        print(f"{methods.KINDS[kind].flag} (default {methods.KINDS[kind].default})")
        for name, spec in methods.specs(kind).items():
            source = "" if spec.source == methods.BUILT_IN else f" [plug-in {spec.source}]"
            print(f"  {name}{source}: {spec.summary}")
            for f in spec.fields():
                print(f"    --{methods.flag_of(f)} (default {f.default}): {f.metadata['help']}")
    for kind in methods.KINDS:
        for problem in methods.load_problems(kind):
            print(f"left out: {problem}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _download_hub_run(args)
        return int(args.handler(args))
    except VaekitError as exc:
        rank = os.environ.get("RANK", "0")  # under torchrun every rank may report; say which
        if not isinstance(exc, ReportedByRankZero):
            print(f"vaekit: error: {'' if rank == '0' else f'[rank {rank}] '}{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as exc:
        # What the memory check before a run could not foresee (an evaluation's batch, a family whose
        # networks it counts by their ranges): one line, not a traceback. Other errors are vaekit's bugs.
        if not isinstance(exc, MemoryError) and not any(sign in str(exc) for sign in OUT_OF_MEMORY):
            raise
        print(f"vaekit: error: out of memory ({_first_line(exc)}): lower the sizes or --batch-size", file=sys.stderr)
        return EXIT_USAGE


def _download_hub_run(args: argparse.Namespace) -> None:
    """--run hf://OWNER/NAME: the run's folder in huggingface_hub's cache (downloaded once)."""
    from vaekit.hub import download, is_hub_name

    run = getattr(args, "run", None)
    if run is not None and is_hub_name(run):
        if args.handler is cmd_push:
            raise VaekitError(f"--run {run}: that run is on the Hub already; push a run folder")
        args.run = download(run)


# How PyTorch says an allocation failed, on the CPU and on a GPU.
OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "CUDA out of memory")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
