"""A study file: a run's configuration (a preset and the sections of a run's TOML) plus `[grid]`,
the settings to vary, each by its section and name with the list of its values:

    preset = "mlp"
    [train]
    epochs = 5
    [grid]
    "train.lr" = [0.001, 0.003]
    "train.seed" = [0, 1, 2]

Every combination of the grid's values is one run (the last key varies fastest), named by its
values (`lr=0.001,seed=0`). `[[variants]]` tables list runs that differ in several settings at
once (a method with its own settings), each crossed with the grid and named by its `name`.
Every run's config is built and checked when the study is read, so a setting a method does not
have, or a value out of its range, is refused before any run starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaekit.config import METHOD_SECTIONS, SECTION_LIST, SECTIONS, RunConfig
from vaekit.errors import VaekitError
from vaekit.presets import resolve_values

GRID = "grid"
VARIANTS = "variants"
EVALUATE = "evaluate"
# [evaluate]: what `vaekit evaluate` measures on each finished run, with its defaults
EVALUATE_DEFAULTS: dict[str, Any] = {
    "k": 1000,
    "quality": False,
    "disentanglement": False,
    "images": None,
    "seed": 0,  # or "run": each run's own train.seed (the codes and the metrics' random stream)
    "dci_train": 10_000,
}
# A run's folder name: each value as the user wrote it, less what a file name cannot hold.
UNSAFE = re.compile(r"[^\w.+-]+")


@dataclass(frozen=True)
class StudyRun:
    """One combination of the grid: its folder name, its values by grid key, its config."""

    name: str
    values: dict[str, Any]
    config: RunConfig
    evaluate: dict[str, Any] | None = None  # `vaekit evaluate`'s settings for this run, or None


@dataclass(frozen=True)
class Study:
    """A study file, read and checked: its text (kept in the study folder) and its runs."""

    path: Path
    text: str
    grid: dict[str, list[Any]]
    runs: tuple[StudyRun, ...]
    evaluate: dict[str, Any] | None = None  # `vaekit evaluate`'s settings for each run, or None

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(parse_toml(self.path, self.text))


def fingerprint_of(content: dict[str, Any]) -> str:
    """What makes two study files the same study: their content, not their path, key order or layout."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def read_text(path: Path) -> str:
    """A study file's text, or one line saying why it cannot be read."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise VaekitError(f"study file {path} does not exist: check its path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VaekitError(f"study file {path} cannot be read ({exc}): give a TOML file") from None


def parse_toml(path: Path, text: str) -> dict[str, Any]:
    """A study file's text as TOML, or one line naming the error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VaekitError(f"study file {path} is not valid TOML ({exc}): fix the file") from None


def _check_key(where: str, what: str, key: str) -> None:
    known = (*SECTIONS, *METHOD_SECTIONS, *((EVALUATE,) if what == "variant" else ()))
    section, _, name = key.partition(".")
    if section not in known or not name:
        raise VaekitError(
            f'{where}: {what} key {key!r} is not section.setting: use one of {", ".join(known)}, e.g. "train.lr"'
        )


def _check_grid(path: Path, grid: Any, variants: list[dict[str, Any]]) -> dict[str, list[Any]]:
    where = f"study file {path}"
    if grid is None and variants:
        return {}  # the variants alone
    if not isinstance(grid, dict) or not grid:
        raise VaekitError(
            f'{where} has no [grid] to vary: add one, e.g. [grid] "train.seed" = [0, 1, 2] (one run: vaekit train)'
        )
    for key, values in grid.items():
        _check_key(where, "grid", key)
        if not isinstance(values, list) or not values:
            raise VaekitError(f"{where}: grid {key!r} must be a non-empty list of values, e.g. [0.001, 0.003]")
        if len(set(map(repr, values))) != len(values):
            raise VaekitError(f"{where}: grid {key!r} lists a value twice: each combination would run twice")
    return grid


def _check_variants(path: Path, variants: Any) -> list[dict[str, Any]]:
    """[[variants]]: runs that differ in more than one setting at once (a method with its own
    settings), each crossed with the grid; each may have a `name` for its runs' folders."""
    where = f"study file {path}"
    if variants is None:
        return []
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise VaekitError(f'{where}: [[variants]] must be tables of settings, e.g. [[variants]] "train.beta" = 4.0')
    for variant in variants:
        for key in variant:
            if key != "name":
                _check_key(where, "variant", key)
    names = [_variant_name(v) for v in variants]
    if len(set(names)) != len(names):
        raise VaekitError(f"{where}: two [[variants]] share the name {names[0]!r}: name each one apart")
    return variants


def _variant_name(variant: dict[str, Any]) -> str:
    settings = {key: value for key, value in variant.items() if key != "name"}
    return _format(variant["name"]) if "name" in variant else run_name(settings, _short_names(list(settings)))


def _check_evaluate(path: Path, raw: Any) -> dict[str, Any] | None:
    """[evaluate]: each finished run is also evaluated (eval.json), as `vaekit evaluate` would."""
    where = f"study file {path}"
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - set(EVALUATE_DEFAULTS):
        unknown = sorted(set(raw) - set(EVALUATE_DEFAULTS)) if isinstance(raw, dict) else raw
        raise VaekitError(f"{where}: [evaluate] takes {', '.join(EVALUATE_DEFAULTS)}, not {unknown}")
    settings = {**EVALUATE_DEFAULTS, **raw}
    for key, least in (("k", 1), ("images", 1), ("dci_train", 2), ("seed", 0)):
        value = settings[key]
        if key == "seed" and value == "run":
            continue
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise VaekitError(f"{where}: [evaluate] {key} = {value!r} must be a whole number, at least {least}")
    for key in ("quality", "disentanglement"):
        if not isinstance(settings[key], bool):
            raise VaekitError(f"{where}: [evaluate] {key} must be true or false")
    return settings


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each grid key's name in run folder names: its setting's name, or the whole key where two
    sections share it (train.beta and objective.beta)."""
    short = [key.partition(".")[2] for key in keys]
    return {key: name if short.count(name) == 1 else key for key, name in zip(keys, short, strict=True)}


def _format(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return UNSAFE.sub("_", text).strip("_") or "_"


def run_name(values: dict[str, Any], short: dict[str, str]) -> str:
    return ",".join(f"{short[key]}={_format(value)}" for key, value in values.items())


def build_run_config(base: dict[str, Any], values: dict[str, Any], name: str, source: str) -> RunConfig:
    """The config of the run with the grid's `values`: the study's sections, the values as flags."""
    layer: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, setting = key.partition(".")
        layer.setdefault(section, {})[setting] = value
    try:
        return resolve_values(None, base, layer, source)
    except VaekitError as exc:
        raise VaekitError(f"{source}, run {name}: {exc}") from None


def read_study(path: str | Path) -> Study:
    """Read a study file and build every run's config (all refusals before anything runs)."""
    path = Path(path)
    text = read_text(path)
    raw = parse_toml(path, text)
    unknown = set(raw) - {GRID, VARIANTS, EVALUATE, "preset", *SECTIONS, *METHOD_SECTIONS}
    if "search" in unknown:
        raise VaekitError(f"study file {path} has [search]: a search runs with vaekit tune, a [grid] with vaekit sweep")
    if unknown:
        raise VaekitError(
            f"study file {path}: unknown key(s) {sorted(unknown)}; use preset, {SECTION_LIST}, [grid], [[variants]] "
            "and [evaluate]"
        )
    asked = raw.pop(EVALUATE, None)
    evaluate = _check_evaluate(path, asked)
    variants = _check_variants(path, raw.pop(VARIANTS, None))
    grid = _check_grid(path, raw.pop(GRID, None), variants)
    keys = list(grid)
    short = _short_names(keys)
    runs = []
    for variant in variants or [{}]:
        settings = {key: value for key, value in variant.items() if key != "name"}
        # a variant's own evaluate.* keys: what is measured on its runs beyond (or instead of) [evaluate]
        own = {key.partition(".")[2]: settings.pop(key) for key in list(settings) if key.startswith(EVALUATE + ".")}
        measured = _check_evaluate(path, {**(asked or {}), **own}) if own else evaluate
        shared = set(settings) & set(keys)
        if shared:
            raise VaekitError(f"study file {path}: {sorted(shared)} are set by a variant and by [grid]: set each once")
        for combination in itertools.product(*(grid[key] for key in keys)):
            values = {**settings, **dict(zip(keys, combination, strict=True))}
            parts = [_variant_name(variant)] if variant else []
            name = ",".join([*parts, run_name(dict(zip(keys, combination, strict=True)), short)] if keys else parts)
            config = build_run_config(raw, values, name, f"study file {path}")
            runs.append(StudyRun(name, values, config, measured))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise VaekitError(f"study file {path}: two runs would share a folder name: give the grid distinct values")
    return Study(path, text, grid, tuple(runs), evaluate)
