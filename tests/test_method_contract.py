"""The contract every method keeps, checked for every registered one (built in or from a plug-in
installed beside vaekit) without listing them by hand: a training step changes the weights and an
evaluation step changes nothing; a family's one-draw IWAE is its ELBO; the settings round-trip
through config.json; a setting out of its range, or given to another method, is refused in one
line; a run killed after a snapshot resumes to the same weights (one run per kind of method, the
one with the most state of its own)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from tests.killing import train_until_killed
from tests.test_resume import final_weights
from vaekit import methods
from vaekit.config import RunConfig, with_overrides
from vaekit.data.columns import TableSchema
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.models import build_run_model
from vaekit.objectives.base import StepBatch, own_parts
from vaekit.objectives.registry import build_objective

SHAPE = (1, 8, 8)
# The data settings that offer what a likelihood may need of the data (config.data_offers).
DATA_FOR_NEED = {"symmetric_pixels": {"pixel_range": "symmetric"}}
CASES = [(kind, name) for kind in methods.KINDS for name in sorted(methods.specs(kind))]
IDS = [f"{kind}-{name}" for kind, name in CASES]


# A likelihood of a table's columns trains on a table: one number and one category of 3 values,
# encoded (W = 4), as a run's config holds them once fitted.
TABLE = TableSchema(("n", "c"), ("numeric", "categorical"), ((), ("a", "b", "c")))
TABLE_DATA = {
    "feature_names": TABLE.names,
    "column_kinds": TABLE.kinds,
    "column_categories": TABLE.categories,
    "feature_mean": (0.0,) * TABLE.width,
    "feature_std": (1.0,) * TABLE.width,
}


def tiny_config(kind: str, name: str, **settings: Any) -> RunConfig:
    """A small MLP with one layer of 3 latents under N(0, I), batches of 8: it offers what every
    method may need (a table, for a likelihood of a table's columns), so a method that cannot
    train on it is at fault."""
    spec = methods.find(kind, name)
    data = {key: value for need in spec.needs for key, value in DATA_FOR_NEED.get(need, {}).items()}
    if "table_columns" in spec.offers:
        data.update(TABLE_DATA)
    sections = {
        "data": data,
        "model": {"hidden_sizes": (16,), "latent_dim": 3},
        "train": {"batch_size": 8},
        kind: {"name": name, **settings},
    }
    return with_overrides(RunConfig(), sections)


def images(n: int = 8, config: RunConfig | None = None) -> torch.Tensor:
    """A batch the config's model takes: blob images, or a table's encoded rows with an empty cell."""
    data = (config or RunConfig()).data
    if data.is_table:
        rng = np.random.default_rng(0)
        cells = {"n": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n)}
        rows = TABLE.encode(cells, "the test")
        rows[0, 0] = np.nan  # an empty cell, left out of the likelihood
        return to_model_input(torch.from_numpy(rows)[:, None, None, :], data)
    return to_model_input(torch.from_numpy(blob_images(n, side=SHAPE[-1])[0]), data)


def shape_of(config: RunConfig) -> tuple[int, int, int]:
    return (1, 1, TABLE.width) if config.data.is_table else SHAPE


def step_batch(x: torch.Tensor) -> StepBatch:
    return StepBatch(x, None, 0, 1.0, slice(0, len(x)), len(x), torch.Generator().manual_seed(0))


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_a_train_step_changes_the_weights_and_an_eval_step_changes_nothing(kind: str, name: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(kind, name)
    model = build_run_model(config, shape_of(config))
    objective = build_objective(config, dataset_size=64)
    x = images(config=config)
    before = state(model)
    with torch.no_grad():
        terms = objective(model.eval(), step_batch(x))
    assert all(torch.equal(before[key], value) for key, value in state(model).items())
    assert set(terms.extras) == set(objective.terms)
    model.train()
    terms = objective(model, step_batch(x))
    parts = [terms.loss, terms.recon_nats, terms.kl_nats, *terms.extras.values()]
    assert all(part.shape == (len(x),) and torch.isfinite(part).all() for part in parts)
    loss = terms.loss.mean() + (terms.auxiliary.mean() if terms.auxiliary is not None else 0)
    loss.backward()
    own = own_parts(objective)
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1), *([own[1]] if own is not None else [])]
    for optimizer in optimizers:
        optimizer.step()
    changed = [key for key, value in state(model).items() if not torch.equal(before[key], value)]
    assert changed, "a training step left every weight as it was"


@pytest.mark.parametrize("name", sorted(methods.providers("posterior", "sampled_posterior")))
def test_one_draw_of_a_familys_iwae_is_its_elbo(name: str) -> None:
    """From the same draws: the same reconstruction term, and a bound that differs only by the KL's
    one-draw estimate against its closed form (where the family has one): zero on average."""
    torch.manual_seed(0)
    config = tiny_config("posterior", name)
    model = build_run_model(config, SHAPE).eval()
    x = images(1).expand(4000, -1, -1, -1)  # one image, 4,000 draws
    eps = torch.randn((len(x), model.noise_dim), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        elbo, iwae = model.elbo(x, eps=eps), model.iwae(x, 1, eps=eps[None])
    assert torch.allclose(iwae.recon_nats, elbo.recon_nats, atol=1e-4)
    gap = iwae.loss - elbo.loss  # (S,)
    assert gap.mean().item() == pytest.approx(0.0, abs=4 * gap.std().item() / math.sqrt(len(gap)) + 1e-4)


def other_value(annotation: Any, field: dataclasses.Field[Any], default: Any) -> Any:
    """A value other than the default, within the setting's declared range."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return next(option for option in options if option != default)
    if default is None:
        annotation, default = options[0], field.metadata.get("low") or 1
    if annotation is bool:
        return not default
    low, high = field.metadata.get("low") or 0, field.metadata.get("high")
    value = default + 1 if annotation is int else default + 0.25 * (1 + abs(default))
    if high is not None and value > high:
        value = default - 1 if annotation is int else (default + low) / 2
    return annotation(value)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_the_settings_round_trip_through_config_json(kind: str, name: str) -> None:
    spec = methods.find(kind, name)
    defaults = spec.settings()
    fields = spec.fields()
    changed = {
        f.name: other_value(t, f, getattr(defaults, f.name))
        for f, t in zip(fields, methods.setting_types(spec.settings), strict=True)
    }
    config = tiny_config(kind, name, **changed)
    assert getattr(config, kind).changed() == [f.name for f in fields]  # every one moved
    stored = json.loads(json.dumps(config.to_dict()))
    assert stored[kind] == {"name": name, **({"package": spec.source} if spec.source != "vaekit" else {}), **changed}
    assert RunConfig.from_dict(stored) == config
    others = [k for k in methods.KINDS if k != kind]
    assert all(stored[other] == getattr(RunConfig(), other).to_dict() for other in others)  # only what it uses


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_a_setting_out_of_range_or_of_another_method_is_one_line(kind: str, name: str) -> None:
    spec = methods.find(kind, name)
    for f in spec.fields():
        low = f.metadata.get("low")
        if low is None:
            continue
        with pytest.raises(VaekitError) as refused:
            tiny_config(kind, name, **{f.name: low - 1})
        message = str(refused.value)
        assert len(message.splitlines()) == 1 and f"--{methods.flag_of(f)}" in message
    other = next(
        (s for s in methods.specs(kind).values() if not {methods.flag_of(f) for f in s.fields()} & set(spec.flags())),
        None,
    )
    if other is not None and spec.fields():
        key = methods.key_of(spec.fields()[0])
        with pytest.raises(VaekitError, match=f"is a setting of {methods.KINDS[kind].flag} .*{name}"):
            with_overrides(
                RunConfig(), {kind: {"name": other.name, key: getattr(spec.settings(), spec.fields()[0].name)}}
            )


def _with_most_state(kind: str) -> str:
    """The method of `kind` that carries the most state of its own: parameters or a loss of its
    own first, then any beside the default."""
    for capability in ("own_parameters", "own_objective"):
        found = methods.providers(kind, capability)
        if found:
            return found[0]
    others = [spec for name, spec in methods.specs(kind).items() if name != methods.KINDS[kind].default]
    return max(others, key=lambda spec: len(spec.fields())).name  # the first with the most settings


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(methods.KINDS))
def test_a_killed_run_resumes_to_the_weights_of_one_never_interrupted(kind: str, tmp_path: Path) -> None:
    name = _with_most_state(kind)
    images, labels = blob_images(400, side=8, seed=4)
    np.savez(tmp_path / "blobs.npz", x=images[:, 0], y=labels)
    flags = ["--dataset", "blobs.npz", "--hidden-sizes", "16", "--latent-dim", "3", "--batch-size", "16"]
    flags += ["--val-size", "40", "--epochs", "2", "--checkpoint-every", "5", "--quiet", methods.KINDS[kind].flag, name]
    for key, value in tiny_config(kind, name).data.__dict__.items():
        if value != getattr(RunConfig().data, key):  # what the method needs of the data
            flags += [f"--{key.replace('_', '-')}", str(value)]
    command = [sys.executable, "-m", "vaekit", "train", *flags]
    done = subprocess.run([*command, "--out", "reference"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    train_until_killed([*flags, "--out", "run"], tmp_path, 12)
    resumed = subprocess.run(
        [sys.executable, "-m", "vaekit", "train", "--resume", "run", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert resumed.returncode == 0, resumed.stderr
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "run")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert math.isfinite(json.loads((tmp_path / "run" / "summary.json").read_text())["test_images"])
