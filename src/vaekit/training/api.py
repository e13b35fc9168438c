"""Training from Python: `fit` a VAE to arrays, tensors, Datasets or DataLoaders already in
memory, and `resume` a run that stopped. Both write an ordinary run folder, so everything the CLI
does with a run (evaluate, sample, plot, serve, resume) works on it too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit import methods
from vaekit.config import SECTIONS, RunConfig, with_overrides
from vaekit.data.memory import from_memory
from vaekit.data.tables import Table
from vaekit.errors import VaekitError
from vaekit.loading import TrainedRun, load_run
from vaekit.models.custom import factory_name
from vaekit.presets import TABLE_PRESET, resolve
from vaekit.progress import progress_by_default
from vaekit.training.callbacks import Callback
from vaekit.training.run import OwnData, resume_run, train_run

_NOT_SETTINGS = {
    "dataset",
    "feature_mean",
    "feature_std",
    "feature_names",
    "column_kinds",
    "column_categories",
    "column_bounds",
}  # given by the data itself


def _section_of() -> dict[str, tuple[str, str]]:
    """fit()'s keyword -> (section, key): every config field by its name ("epochs"), each method
    kind by its own ("objective"), and each method's settings by their flag's key ("tc_beta")."""
    where = {f.name: (section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    for kind in methods.KINDS:
        where[kind] = (kind, "name")
        where.update({key: (kind, key) for key in methods.legacy_keys(kind) if key not in where})
    return where


def _settings_by_section(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    where = _section_of()
    grouped: dict[str, dict[str, Any]] = {section: {} for section in (*SECTIONS, *methods.KINDS)}
    for name, value in settings.items():
        if name not in where or name in _NOT_SETTINGS:
            known = ", ".join(sorted(set(where) - _NOT_SETTINGS))
            raise VaekitError(f"fit() has no setting {name!r}: give one of {known}")
        section, key = where[name]
        grouped[section][key] = value
    return grouped


def fit(
    data: Any,
    labels: Any = None,
    *,
    out: str | Path | None = None,
    preset: str | None = None,
    config: RunConfig | str | Path | None = None,
    columns: Sequence[str] | None = None,
    callbacks: Sequence[Callback] = (),
    force: bool = False,
    progress: bool | None = None,
    **settings: Any,
) -> TrainedRun:
    """Train a VAE on data in memory and return the trained run, loaded.

    The data is split as a file of the user's would be (10% test, 10% validation, seeded) and
    kept in the run folder as data.npz, so the run resumes, evaluates and serves from the CLI.

    Args:
        data: a built-in dataset's name ("fashion-mnist", "mnist", ...) or a file, as `vaekit train
            --dataset` takes (split as the CLI splits it); or images (N, C, H, W) or (N, H, W),
            uint8 (0..255) or float in [0, 1]; or vectors
            (N, D), any numbers (a table: standardised on the training split, the `table` preset
            by default); as a numpy array, torch tensor, pandas DataFrame, or a torch Dataset /
            DataLoader that yields x or (x, label). Arrays and tensors are converted whole (no
            per-item Python).
        labels: optional, one per item (integers, or names that become class names).
        out: the run folder to create (default `runs/<preset>-<time>`); an existing non-empty
            one needs `force=True`.
        preset: start from a named preset.
        config: start from a `RunConfig` or a TOML file (a preset given too is applied first).
        columns: a table's feature names (a DataFrame names its own, and types them: numbers,
            integers, booleans, categories (text or pandas category), empty cells; `column_types=
            {"zip": "categorical"}` overrides).
        callbacks: objects with `on_epoch_end(model, report)`, called after each epoch.
        force: replace an existing run folder.
        progress: show progress bars (None: in a Jupyter notebook, where they are widgets, and nowhere else).
        **settings: any config setting by name, e.g. `epochs=20, latent_dim=8, lr=3e-4,
            val_size=0`; `architecture=` also takes your own factory (a function, or its
            "module:function" name): `factory(spec: NetworkSpec) -> (encoder, decoder)`, see
            `vaekit.models.custom`.

    Returns:
        The trained run, loaded from its folder (best checkpoint).
    """
    if callable(settings.get("architecture")):
        settings["architecture"] = factory_name(settings["architecture"])  # what the run stores
    if isinstance(settings.get("column_types"), dict):  # {name: kind}, as Python users write it
        settings["column_types"] = tuple(f"{name}={kind}" for name, kind in settings["column_types"].items())
    own_data = _own_data(data, labels, columns, settings.get("column_types", ()))
    is_table = own_data is not None and isinstance(own_data.data, Table)
    chosen = preset if preset is not None or config is not None else (TABLE_PRESET if is_table else None)
    flags = _settings_by_section(settings)
    if own_data is None:
        flags["data"]["dataset"] = str(data)
    if isinstance(config, RunConfig):
        resolved = with_overrides(config, flags, preset=preset)
    else:
        resolved = resolve(preset=chosen, config_file=config, flags=flags)
    if out is None:
        out = Path("runs") / f"{resolved.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train_run(
        resolved,
        out,
        force=force,
        progress=progress_by_default(progress),
        own_data=own_data,
        callbacks=callbacks,
    )
    return load_run(result.run_dir, trust_code=True)  # its network is the one just trained


def _own_data(data: Any, labels: Any, columns: Sequence[str] | None, column_types: Any) -> OwnData | None:
    """Data handed over in memory, ready to be split and saved with the run; None for a built-in
    dataset's name or a file, which the run reads as `vaekit train --dataset` would."""
    if not isinstance(data, str | Path):
        return OwnData(*from_memory(data, labels, columns, column_types))
    if labels is not None or columns is not None:
        raise VaekitError(
            f"fit({str(data)!r}) reads its labels and columns from the dataset: give labels= and columns= only "
            "with data in memory"
        )
    return None


def resume(
    run: str | Path, callbacks: Sequence[Callback] = (), progress: bool | None = None, trust_code: bool = False
) -> TrainedRun:
    """Continue a run that was interrupted (Ctrl-C, a crash, a lost machine) exactly where its
    last snapshot left it, and return it loaded. Data given to `fit` is read from the run folder.
    A run with a network from user code needs `trust_code=True` (see `load_run`)."""
    result = resume_run(run, progress=progress_by_default(progress), callbacks=callbacks, trust_code=trust_code)
    return load_run(result.run_dir, trust_code=trust_code)
