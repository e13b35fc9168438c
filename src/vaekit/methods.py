"""Methods as plug-ins: what an objective, a posterior family, a prior or a likelihood *is*,
declared beside its code.

Each method module defines `SPECS`, a tuple of `MethodSpec`: its name, a frozen dataclass of its
own settings (their defaults, help, flag and range declared with `setting`), its one-line
summary and paper, and what it needs from the rest of the model and offers to it, as
capabilities from `CAPABILITIES`. Nothing outside the method knows its name: the config stores
`{"name": ..., **settings}` for the methods a run uses (`MethodChoice`), the CLI and `vaekit.fit`
make their flags and keywords from the specs, and every rule that spans methods is a check of
needs against offers.

Specs are found, once per process, in the modules of vaekit's own package for the kind
(`vaekit.objectives`, `vaekit.posteriors`, `vaekit.priors`, `vaekit.likelihoods`) and then
through the entry-point groups of the same names, the way pytest finds its plug-ins. A plug-in
that fails to import or declares a malformed spec is left out with a one-line note
(`load_problems`), and vaekit keeps its own methods.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import math
import pkgutil
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaekit.errors import VaekitError

# What a method may need or offer. A need is met when the run's other parts offer it
# (`model_offers` adds what the model's structure gives); each has the sentence that explains a
# refusal, completed by the method's flag, e.g. "--objective betatc ...".
CAPABILITIES: dict[str, str] = {
    "one_layer": "is written for one stochastic layer: leave out --stochastic-layers 2",
    "factorised_prior": "measures the latent against the factorised N(0, I) prior: use --prior standard",
    "latent": "needs a latent: give --latent-dim 1 or more",
    "gaussian_posterior": "reads q(z|x)'s mean and variance, which only a Gaussian posterior gives",
    "sampled_posterior": "weighs draws of q(z|x) by their density, which this posterior does not give",
    # offered by objectives
    "elbo": "reports an ELBO (a deterministic encoder has none)",
    "kl_schedule": "takes --beta, --warmup-steps and --free-bits",
    "own_parameters": "trains parameters of its own beside the model's",
    # offered by posterior families
    "point_code": "gives one point code per item",
    "discrete_codes": "gives discrete codes",
    "own_objective": "trains with a loss of its own",
    "own_prior": "has a prior of its own",
    "ladder_top": "can be the top layer of a two-layer ladder",
    "per_dimension_kl": "gives the KL per latent dimension in closed form",
    "prior_phase": "trains a prior of its own after the autoencoder (--prior-epochs, vaekit train-prior)",
    # needed by likelihoods, offered by the data (config.data_offers)
    "symmetric_pixels": "models 8-bit levels in [-1, 1]: add --pixel-range symmetric (and no --binarize)",
    "unit_grey_pixels": "is a density of grey pixels in [0, 1]: use --pixel-range unit and no --binarize (binary "
    "pixels want --likelihood bernoulli)",
    # offered by likelihoods
    "density": "is a density over continuous values (what --dequantize is for)",
    "binary_values": "is a probability mass over 0/1 values",
    "table_rows": "models a table's features",
    "table_columns": "models each column of a table by its type (numbers, categories) and leaves empty cells out",
}


@dataclass(frozen=True)
class Kind:
    """A kind of method: where its built-ins live, its entry-point group, its flag and default."""

    name: str  # "objective"
    package: str  # "vaekit.objectives", also the entry-point group
    flag: str  # "--objective"
    default: str  # "elbo"
    # more packages whose modules may declare methods of the kind: a posterior family that builds
    # its own networks (the VQ-VAE) declares itself beside them in vaekit.models
    also: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "objective": Kind("objective", "vaekit.objectives", "--objective", "elbo"),
    "posterior": Kind("posterior", "vaekit.posteriors", "--posterior", "gaussian", ("vaekit.models",)),
    "prior": Kind("prior", "vaekit.priors", "--prior", "standard"),  # a module: its own SPECS
    "likelihood": Kind("likelihood", "vaekit.likelihoods", "--likelihood", "bernoulli"),
}
NAME = re.compile(r"[a-z][a-z0-9-]*")
BUILT_IN = "vaekit"


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
) -> Any:
    """A method's setting: its default, its help, its flag (default: --NAME) and its range
    [low, high] (or strictly above `above`), checked when the settings are built."""
    metadata = {"help": help, "flag": flag, "low": low, "high": high, "above": above}
    return field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field[Any]) -> str:
    """A setting's command-line flag without its dashes, e.g. "tc-beta"."""
    return f.metadata.get("flag") or f.name.replace("_", "-")


def key_of(f: dataclasses.Field[Any]) -> str:
    """The setting's name in `vaekit.fit` and in config files written before the plug-ins:
    its flag with underscores ("tc_beta")."""
    return flag_of(f).replace("-", "_")


def check_ranges(settings: Any) -> None:
    """Refuse a setting outside the range its field declares, in one line naming its flag."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        low, high, above = f.metadata.get("low"), f.metadata.get("high"), f.metadata.get("above")
        flag = "--" + flag_of(f)
        if not math.isfinite(value):
            raise VaekitError(f"{flag} {value} must be a finite number")
        if low is not None and value < low:
            raise VaekitError(f"{flag} {value} must be at least {low:g}")
        if above is not None and value <= above:
            raise VaekitError(f"{flag} {value} must be more than {above:g}")
        if high is not None and value > high:
            raise VaekitError(f"{flag} {value} is too large: use at most {high:g}")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a method that has none."""


@dataclass(frozen=True)
class MethodSpec:
    """Everything vaekit knows about one method. `build` makes the working object from the
    settings and a kind-specific context (objectives: `ObjectiveContext`); `check(settings,
    config)` adds rules the capabilities cannot say (it raises VaekitError)."""

    name: str
    summary: str  # one line, for --help and the docs' tables
    paper: str  # a link, or "" for vaekit's own
    build: Callable[..., Any]
    settings: type = NoSettings
    needs: frozenset[str] = frozenset()
    offers: frozenset[str] = frozenset()
    min_batch: int = 1
    check: Callable[[Any, Any], None] | None = None
    # Kind-specific parts beyond `build`, by name: a posterior family's "model" and "objective"
    # when it brings its own, its "prior_phase" (models/vq.py). A hook is a callable, or its
    # "module:attribute" path when it lives in a layer above the spec's (imported when used).
    hooks: dict[str, Callable[..., Any] | str] = field(default_factory=dict)
    # what the method makes of the figures vaekit evaluate reports, where that differs from the
    # Gaussian ELBO's (shown above the table)
    figure_note: str = ""
    source: str = BUILT_IN  # the package that provides it (BUILT_IN, or a plug-in's distribution)

    def make_settings(self, values: dict[str, Any]) -> Any:
        settings = self.settings(**values)
        check_ranges(settings)
        return settings

    def fields(self) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(self.settings)

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The hook `name`, imported if it is given by its path; None if the method has none."""
        found = self.hooks.get(name)
        if isinstance(found, str):
            module, _, attribute = found.partition(":")
            found = getattr(importlib.import_module(module), attribute)
        return found

    def flags(self) -> list[str]:
        """Its settings' flags, without dashes."""
        return [flag_of(f) for f in self.fields()]


def _malformed(spec: Any) -> str | None:
    """What is wrong with a spec a plug-in declares, or None."""
    if not isinstance(spec, MethodSpec):
        return f"{spec!r} is not a vaekit.methods.MethodSpec"
    if not NAME.fullmatch(spec.name):
        return f"its name {spec.name!r} is not lower-case letters, digits and dashes"
    if not (dataclasses.is_dataclass(spec.settings) and spec.settings.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        return f"{spec.name}: its settings {spec.settings!r} are not a frozen dataclass"
    unknown = (spec.needs | spec.offers) - set(CAPABILITIES)
    if unknown:
        return f"{spec.name}: unknown capabilities {sorted(unknown)} (known: {', '.join(CAPABILITIES)})"
    if not callable(spec.build):
        return f"{spec.name}: its build is not callable"
    try:
        spec.make_settings({})
    except Exception as exc:  # a default outside its own range, a field without a default
        return f"{spec.name}: its default settings do not build ({exc})"
    return None


@dataclass
class _Found:
    specs: dict[str, MethodSpec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


_FOUND: dict[str, _Found] = {}


def _builtin_specs(kind: Kind) -> list[MethodSpec]:
    found: list[MethodSpec] = []
    for name in (kind.package, *kind.also):
        package = importlib.import_module(name)
        found.extend(getattr(package, "SPECS", ()))  # a module (vaekit.priors), or a package's own
        if not hasattr(package, "__path__"):
            continue
        for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{name}.{module_info.name}")
            found.extend(getattr(module, "SPECS", ()))
    return found


def _plugin_specs(kind: Kind, found: _Found) -> None:
    for entry in importlib.metadata.entry_points(group=kind.package):
        package = entry.dist.name if entry.dist is not None else entry.value
        try:
            loaded = entry.load()
            specs = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
        except Exception as exc:
            found.problems.append(f"plug-in {package} ({entry.value}) failed to import: {exc}")
            continue
        for spec in specs:
            problem = _malformed(spec)
            if problem is None and spec.name in found.specs:
                problem = f"{kind.name} {spec.name!r} is already provided by {found.specs[spec.name].source}"
            if problem is not None:
                found.problems.append(f"plug-in {package} ({entry.value}) is left out: {problem}")
                continue
            found.specs[spec.name] = dataclasses.replace(spec, source=package)


def _found(kind_name: str) -> _Found:
    if kind_name not in _FOUND:
        kind = KINDS[kind_name]
        found = _Found({spec.name: spec for spec in _builtin_specs(kind)})
        _plugin_specs(kind, found)
        for problem in found.problems:
            print(f"vaekit: note: {problem}", file=sys.stderr)
        _FOUND[kind_name] = found
    return _FOUND[kind_name]


def specs(kind: str) -> dict[str, MethodSpec]:
    """Every method of `kind` ("objective", "posterior"), built in and from plug-ins, by name."""
    return _found(kind).specs


def load_problems(kind: str) -> list[str]:
    """One line per plug-in of `kind` that could not be used."""
    return _found(kind).problems


def find(kind: str, name: str, package: str | None = None) -> MethodSpec:
    """The spec of method `name`, or one line naming the known ones (and any broken plug-in);
    `package` is the plug-in a saved config says provides it."""
    known = specs(kind)
    if name in known:
        return known[name]
    flag = KINDS[kind].flag
    if package is not None:
        message = f"{flag} {name!r} comes from the plug-in {package}, which is not installed: pip install {package}"
    else:
        message = f"{flag} {name!r} is not known: use one of {', '.join(known)}"
    problems = load_problems(kind)
    if problems:
        message += f" ({'; '.join(problems)})"
    raise VaekitError(message)


@dataclass(frozen=True)
class MethodChoice:
    """The method a run uses for one kind, with its settings: stored as `{"name": ..., **settings}`."""

    kind: str
    name: str
    settings: Any

    @property
    def spec(self) -> MethodSpec:
        return find(self.kind, self.name)

    def to_dict(self) -> dict[str, Any]:
        """`{"name": ..., **settings}`, and for a plug-in's method the package that provides it."""
        source = self.spec.source
        plugin = {"package": source} if source != BUILT_IN else {}
        return {"name": self.name, **plugin, **dataclasses.asdict(self.settings)}

    def changed(self) -> list[str]:
        """The settings that differ from the method's defaults."""
        default = self.spec.settings()
        return [
            f.name
            for f in dataclasses.fields(self.settings)
            if getattr(self.settings, f.name) != getattr(default, f.name)
        ]


def default_choice(kind: str) -> MethodChoice:
    name = KINDS[kind].default
    return MethodChoice(kind, name, find(kind, name).make_settings({}))


def choose(current: MethodChoice, values: dict[str, Any], coerce: Callable[[str, Any, Any], Any]) -> MethodChoice:
    """`current` with the method `values["name"]` (if given) and the given settings replaced.

    A new method starts from its own defaults. A key may be a setting's name or its flag's key
    (`beta` or `tc_beta` for betatc); one that belongs to another method is refused, naming it."""
    values = dict(values)
    kind = KINDS[current.kind]
    name, package = values.pop("name", current.name), values.pop("package", None)
    if not isinstance(name, str):
        raise VaekitError(f"{kind.flag} must be a method's name, not {name!r}")
    spec = find(current.kind, name, package)
    base = current.settings if name == current.name else spec.settings()
    by_key = {key: f for f in spec.fields() for key in (f.name, key_of(f))}
    hints = {f.name: t for f, t in zip(spec.fields(), setting_types(spec.settings), strict=True)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in by_key:
            raise VaekitError(_foreign_setting(current.kind, key, name))
        f = by_key[key]
        changes[f.name] = coerce(f"{current.kind}.{f.name}", hints[f.name], value)
    merged = {**dataclasses.asdict(base), **changes}
    try:
        settings = spec.make_settings(merged)
    except TypeError as exc:  # a plug-in's settings that refuse their own fields
        raise VaekitError(f"{kind.flag} {name}: its settings do not build ({exc})") from None
    return MethodChoice(current.kind, name, settings)


def setting_types(settings: type) -> list[Any]:
    """The resolved type of each field of a settings dataclass, in order."""
    hints = typing.get_type_hints(settings)
    return [hints[f.name] for f in dataclasses.fields(settings)]


def _foreign_setting(kind: str, key: str, chosen: str) -> str:
    flag = KINDS[kind].flag
    owned = [
        (spec.name, flag_of(f)) for spec in specs(kind).values() for f in spec.fields() if key in (f.name, key_of(f))
    ]
    if not owned:
        return f"unknown {kind} setting {key!r}: {flag} {chosen} has {_setting_list(kind, chosen)}"
    names = " or ".join(dict.fromkeys(name for name, _ in owned))
    if all(key == setting_flag.replace("-", "_") for _, setting_flag in owned):  # given by its flag
        shown = "--" + key.replace("_", "-")
        return f"{shown} is a setting of {flag} {names}, not of {chosen}: leave it out or add {flag} {owned[0][0]}"
    # a short name another method uses (betatc's beta, flag --tc-beta): say which flag it would be
    where = " or ".join(f"{name} (--{setting_flag})" for name, setting_flag in owned)
    return f"{kind}.{key} is a setting of {flag} {where}, not of {chosen}: leave it out or choose that {kind}"


def _setting_list(kind: str, name: str) -> str:
    fields = find(kind, name).fields()
    return "the settings " + ", ".join(key_of(f) for f in fields) if fields else "no settings"


def legacy_keys(kind: str) -> dict[str, list[str]]:
    """Every setting's flag key (its name in `vaekit.fit` and in configs written before the
    plug-ins), with the methods that have it."""
    keys: dict[str, list[str]] = {}
    for spec in specs(kind).values():
        for f in spec.fields():
            keys.setdefault(key_of(f), []).append(spec.name)
    return keys


def choice(kind: str, name: str, **settings: Any) -> MethodChoice:
    """A method with its settings by their names, for Python: `choice("objective", "betatc", beta=3.0)`."""
    return MethodChoice(kind, name, find(kind, name).make_settings(settings))


def providers(kind: str, capability: str) -> list[str]:
    """The methods of `kind` that offer `capability`."""
    return [spec.name for spec in specs(kind).values() if capability in spec.offers]


def _range(f: dataclasses.Field[Any]) -> str:
    low, high, above = (f.metadata.get(key) for key in ("low", "high", "above"))
    if above is not None:
        return f"> {above:g}" + (f", <= {high:g}" if high is not None else "")
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f">= {low:g}"
    return "" if high is None else f"<= {high:g}"


def markdown_table(kind: str) -> str:
    """The methods of `kind` as a Markdown table, for the docs (docs/reference/methods.md)."""
    flag = KINDS[kind].flag
    lines = [
        f"| `{flag}` | what it is | paper | settings: flag (default, range) | needs | offers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in specs(kind).items():
        settings = "<br>".join(
            f"`--{flag_of(f)}` ({f.default}{', ' + _range(f) if _range(f) else ''})" for f in spec.fields()
        )
        needs = [*sorted(spec.needs), *([f"batch >= {spec.min_batch}"] if spec.min_batch > 1 else [])]
        paper = f"[link]({spec.paper})" if spec.paper else ""
        source = "" if spec.source == BUILT_IN else f" (plug-in {spec.source})"
        row = [f"`{name}`{source}", spec.summary.replace("|", "\\|"), paper, settings or "none"]
        row += [", ".join(needs), ", ".join(sorted(spec.offers))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
