"""A search study file (`vaekit tune`): a run's configuration plus `[search]`, the settings to
search, each a range or a list of choices, and `[tune]`, how:

    preset = "mlp"
    [train]
    epochs = 5
    [search]
    "train.lr" = {low = 1e-4, high = 1e-2, log = true}
    "train.beta" = {low = 0.5, high = 4.0}
    "model.latent_dim" = [8, 16, 32]
    [tune]
    trials = 20                 # finished trials (complete or pruned) to reach
    metric = "val_nelbo_nats"   # a validation figure of metrics.jsonl, at the kept epoch
    direction = "minimize"
    seed = 0                    # the sampler's
    prune = true                # stop hopeless trials from their epoch figures (Optuna's median pruner)

A range of two whole numbers is searched over the integers. Every setting is checked at each end
of its range and at each choice (the others at their first value) before any trial starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaekit.config import METHOD_SECTIONS, SECTION_LIST, SECTIONS, RunConfig
from vaekit.errors import VaekitError
from vaekit.studies.study import build_run_config, fingerprint_of, parse_toml, read_text

SEARCH, TUNE = "search", "tune"
METRICS = ("val_nelbo_nats", "val_recon_nats", "val_kl_nats", "val_bits_per_dim")
TUNE_KEYS = {"trials", "metric", "direction", "seed", "prune"}


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


Dimension = Range | list[Any]


@dataclass(frozen=True)
class SearchStudy:
    path: Path
    text: str
    base: dict[str, Any]
    space: dict[str, Dimension]
    trials: int = 20
    metric: str = "val_nelbo_nats"
    direction: str = "minimize"
    seed: int = 0
    prune: bool = True
    checked: tuple[RunConfig, ...] = ()  # the configs read_search checked: each end of each range, each choice

    @property
    def fingerprint(self) -> str:
        return search_fingerprint(parse_toml(self.path, self.text))


def search_fingerprint(content: dict[str, Any]) -> str:
    """A search's identity: its file less the [tune] settings a later start may change (the
    budget, the seed, pruning), with the metric and direction as they default."""
    options = content.get(TUNE) or {}
    tune = {"metric": options.get("metric", METRICS[0]), "direction": options.get("direction", "minimize")}
    return fingerprint_of({**content, TUNE: tune})


def _dimension(where: str, key: str, value: Any) -> Dimension:
    section, _, name = key.partition(".")
    known = (*SECTIONS, *METHOD_SECTIONS)
    if section not in known or not name:
        raise VaekitError(f"{where}: search key {key!r} is not section.setting: use one of {', '.join(known)}")
    if isinstance(value, list):
        if not value or len(set(map(repr, value))) != len(value):
            raise VaekitError(f"{where}: search {key!r} must list distinct choices, at least one")
        return value
    if not isinstance(value, dict) or not {"low", "high"} <= set(value) or set(value) - {"low", "high", "log"}:
        raise VaekitError(
            f"{where}: search {key!r} must be a list of choices or a range {{low = ..., high = ..., log = true}}"
        )
    low, high, log = value["low"], value["high"], bool(value.get("log", False))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low >= high:
        raise VaekitError(f"{where}: search {key!r} has low {low!r} and high {high!r}: give numbers with low < high")
    if log and low <= 0:
        raise VaekitError(f"{where}: search {key!r} is on a log scale and needs low > 0, not {low!r}")
    return Range(low, high, log)


def _options(where: str, raw: Any) -> dict[str, Any]:
    options = dict(raw or {})
    unknown = set(options) - TUNE_KEYS
    if unknown:
        raise VaekitError(f"{where}: unknown [tune] key(s) {sorted(unknown)}; use {', '.join(sorted(TUNE_KEYS))}")
    if options.get("metric", METRICS[0]) not in METRICS:
        raise VaekitError(f"{where}: [tune] metric {options['metric']!r} is not known: use one of {', '.join(METRICS)}")
    if options.get("direction", "minimize") not in ("minimize", "maximize"):
        raise VaekitError(f"{where}: [tune] direction must be minimize or maximize")
    trials = options.get("trials", 20)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise VaekitError(f"{where}: [tune] trials {trials!r} must be a whole number, at least 1")
    return options


def corners(space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """The values every search setting is checked at: each end of each range, each choice, the
    other settings at their first value."""
    first = {key: (dim.low if isinstance(dim, Range) else dim[0]) for key, dim in space.items()}
    found = [first]
    for key, dim in space.items():
        for value in (dim.low, dim.high) if isinstance(dim, Range) else dim:
            found.append({**first, key: value})
    return found


def read_search(path: str | Path) -> SearchStudy:
    """Read a search study file and check every setting it may try (all refusals before a trial)."""
    path = Path(path)
    text = read_text(path)
    raw = parse_toml(path, text)
    where = f"study file {path}"
    unknown = set(raw) - {SEARCH, TUNE, "preset", *SECTIONS, *METHOD_SECTIONS}
    if "grid" in unknown or "variants" in unknown:
        raise VaekitError(f"{where} has a [grid]: a grid runs with vaekit sweep, a [search] with vaekit tune")
    if unknown:
        raise VaekitError(f"{where}: unknown key(s) {sorted(unknown)}; use preset, {SECTION_LIST}, [search] and [tune]")
    search = raw.pop(SEARCH, None)
    if not isinstance(search, dict) or not search:
        example = '"train.lr" = {low = 1e-4, high = 1e-2, log = true}'
        raise VaekitError(f"{where} has no [search]: add one, e.g. {example}")
    space = {key: _dimension(where, key, value) for key, value in search.items()}
    options = _options(where, raw.pop(TUNE, None))
    checked = []
    for values in corners(space):
        config = build_run_config(raw, values, ", ".join(f"{k}={v}" for k, v in values.items()), where)
        if config.data.val_size == 0:
            raise VaekitError(f"{where}: tuning reads the validation split: leave out val_size = 0")
        checked.append(config)
    return SearchStudy(path, text, raw, space, **options, checked=tuple(checked))
