"""The `vaekit` command: one thin function per sub-command over the library.

Config flags (--epochs, --latent-dim, ...) are generated from the config dataclasses, so every
setting has exactly one flag and one help text. User errors print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from vaekit.config import PRESETS, SECTIONS, field_types, preset_config, resolve
from vaekit.errors import VaekitError

EXIT_USAGE = 2


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # One line, no usage dump: the message names the flag, --help gives the rest.
        self.exit(EXIT_USAGE, f"vaekit: error: {message} (see `{self.prog} --help`)\n")


def _optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _flag_kwargs(annotation: Any) -> dict[str, Any]:
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        if inner is int:
            return {"type": _optional_int, "metavar": "N|none"}
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
            flag = "--" + f.name.replace("_", "-")
            kwargs = _flag_kwargs(types_by_name[f.name])
            group.add_argument(
                flag, dest=f"{section}.{f.name}", default=argparse.SUPPRESS, help=f.metadata.get("help"), **kwargs
            )


def config_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config flags the user actually gave, grouped by section."""
    flags: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            flags[section][name] = value
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="vaekit", description="Train, inspect and sample Variational Autoencoders.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    train = commands.add_parser("train", help="train a VAE and write a run folder")
    train.add_argument("--preset", help=f"start from a named preset: {', '.join(PRESETS)}")
    train.add_argument("--config", type=Path, help="TOML file with [data], [model], [train] tables")
    train.add_argument("--out", type=Path, help="run folder to create (default: runs/<preset>-<time>)")
    train.add_argument("--force", action="store_true", help="replace an existing run folder")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(train)
    train.set_defaults(handler=cmd_train)

    for name, what in (("sample", "decode draws from the prior"), ("reconstruct", "originals over reconstructions")):
        sub = commands.add_parser(name, help=f"PNG grid: {what}")
        sub.add_argument("--run", required=True, type=Path, help="run folder (or .safetensors checkpoint)")
        sub.add_argument("-n", type=int, default=64, help="number of images (default 64)")
        sub.add_argument("--out", required=True, type=Path, help="PNG file to write")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--checkpoint", choices=["best", "last"], default="best")
        sub.add_argument("--device", default="cpu")
        sub.add_argument("--force", action="store_true", help="replace an existing output file")
        if name == "reconstruct":
            sub.add_argument("--split", choices=["val", "test"], default="test")
        sub.set_defaults(handler=cmd_sample if name == "sample" else cmd_reconstruct)

    datasets = commands.add_parser("datasets", help="where each built-in dataset is, or how to get it")
    datasets.add_argument("--data-dir", help="also look in this folder")
    datasets.set_defaults(handler=cmd_datasets)

    presets = commands.add_parser("presets", help="list the named presets and their settings")
    presets.add_argument("--json", action="store_true", help="print the full settings as JSON")
    presets.set_defaults(handler=cmd_presets)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.runs import train_run

    config = resolve(preset=args.preset, config_file=args.config, flags=config_flags(args))
    out = args.out or Path("runs") / f"{config.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train_run(
        config, out, force=args.force, progress=not args.quiet, announce=lambda line: print(line, file=sys.stderr)
    )
    test = result.test
    print(
        f"test negative ELBO {test.nelbo_nats:.2f} nats/image "
        f"(reconstruction {test.recon_nats:.2f} + KL {test.kl_nats:.2f}), "
        f"{test.bits_per_dim:.4f} bits/dim, {test.images} images, wall time {result.wall_seconds:.1f} s"
    )
    print(f"run folder: {result.run_dir}  (metrics.jsonl, summary.json, images/, checkpoints/)")
    return 0


def _check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise VaekitError(f"{path} already exists: choose another --out or pass --force to replace it")
    if path.suffix.lower() != ".png":
        raise VaekitError(f"--out {path} must end in .png")


def _check_count(n: int) -> None:
    if not 1 <= n <= 4096:
        raise VaekitError(f"-n {n} is out of range: ask for 1 to 4096 images")


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from vaekit.imaging import make_grid, save_png
    from vaekit.runs import load_run

    _check_count(args.n)
    _check_output(args.out, args.force)
    run = load_run(args.run, args.checkpoint, args.device)
    generator = torch.Generator(run.model.device).manual_seed(args.seed)
    images = run.to_display(run.model.sample(args.n, generator))
    save_png(args.out, make_grid(images), scale=2)
    print(f"wrote {args.n} prior samples to {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from vaekit.imaging import interleave_rows, make_grid, save_png
    from vaekit.runs import GRID_COLUMNS, load_run

    _check_count(args.n)
    _check_output(args.out, args.force)
    run = load_run(args.run, args.checkpoint, args.device)
    images = getattr(run.load_data(progress=False), args.split).images[: args.n]
    x = run.prepare(images, torch.Generator(run.model.device).manual_seed(args.seed))
    pairs = interleave_rows(run.to_display(x), run.to_display(run.model.reconstruct(x)), GRID_COLUMNS)
    save_png(args.out, make_grid(pairs, GRID_COLUMNS), scale=2)
    print(f"wrote {len(images)} {args.split} images over their reconstructions to {args.out}")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except VaekitError as exc:
        print(f"vaekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
