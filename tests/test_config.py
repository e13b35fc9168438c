import dataclasses
import json
from pathlib import Path

import pytest

from vaekit.config import RunConfig, with_overrides
from vaekit.errors import VaekitError
from vaekit.methods import choice
from vaekit.presets import PRESETS, mse_kl_sigma, preset_config, resolve

LEGACY_RUNS = Path(__file__).parent / "fixtures" / "legacy_runs"


def test_layers_apply_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "conv-small"\n[train]\nepochs = 3\nlr = 0.01\n[model]\nlatent_dim = 5\n')
    config = resolve(config_file=toml, flags={"train": {"epochs": 7}, "data": {}})
    assert config.preset == "conv-small"
    assert config.model.architecture == "conv"  # from the preset
    assert config.model.latent_dim == 5  # file over preset
    assert config.train.lr == 0.01
    assert config.train.epochs == 7  # flag over file
    assert resolve(preset="mlp", config_file=toml).model.architecture == "mlp"  # flag preset wins


def test_round_trip_through_dict() -> None:
    for name in PRESETS:
        config = preset_config(name)
        assert RunConfig.from_dict(config.to_dict()) == config


def _legacy_config(name: str) -> dict:
    """The config of a run saved before the methods were plug-ins (tests/fixtures/legacy_runs)."""
    raw = json.loads((LEGACY_RUNS / name / "config.json").read_text())
    return {section: raw[section] for section in ("data", "model", "train", "objective", "preset")}


def test_a_saved_config_loads_after_an_unused_setting_s_default_changed() -> None:
    # a vMF run saved when --flow-hidden defaulted to 256, or an ELBO run with an older capacity default
    saved = _legacy_config("vmf")
    expected = RunConfig.from_dict(saved)
    assert (expected.posterior.to_dict(), expected.objective.to_dict()) == ({"name": "vmf"}, {"name": "elbo"})
    saved["model"]["flow_hidden"] = 256
    saved["objective"]["capacity_max"] = 123.0
    assert RunConfig.from_dict(saved) == expected
    # a setting of the family the run uses is kept, and still checked
    saved["model"]["posterior"] = "iaf"
    assert RunConfig.from_dict(saved).posterior.settings.hidden == 256
    saved["model"]["flow_hidden"] = 0
    with pytest.raises(VaekitError, match="flow-hidden"):
        RunConfig.from_dict(saved)


def test_a_config_stores_only_the_methods_it_uses_and_reads_back_the_same() -> None:
    config = with_overrides(RunConfig(), {"objective": {"name": "betatc", "tc_beta": 3.0}})
    stored = config.to_dict()
    assert stored["objective"] == {"name": "betatc", "alpha": 1.0, "beta": 3.0, "gamma": 1.0, "estimator": "mss"}
    assert stored["posterior"] == {"name": "gaussian"}
    assert RunConfig.from_dict(json.loads(json.dumps(stored))) == config
    # in the new form a setting of another method is an error, not a leftover to drop
    stored["objective"]["capacity_max"] = 25.0
    with pytest.raises(VaekitError, match="--capacity-max is a setting of --objective annealed, not of betatc"):
        RunConfig.from_dict(stored)


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset_config("mlp").train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"model": {"latent_dim": -1}}, "--latent-dim -1 must be 0 or more"),
        ({"train": {"epochs": -1}}, "--epochs -1 must be at least 1"),
        ({"train": {"lr": 0.0}}, "--lr"),
        ({"model": {"kernel_size": 4}}, "odd"),
        ({"model": {"conv_channels": "8,16", "conv_strides": "2"}}, "one stride per layer"),
        ({"model": {"hidden_sizes": "400,x"}}, "list of integers"),
        ({"model": {"activation": "swish"}}, "not one of"),
        ({"model": {"latent_dimm": 3}}, "unknown setting model.latent_dimm"),
        ({"data": {"binarize": True, "pixel_range": "symmetric"}}, "--binarize needs"),
        ({"train": {"epochs": 2.5}}, "whole number"),
        ({"likelihood": {"name": "gaussian", "sigma": 0.0}}, "--sigma 0.0 must be more than 0"),
        ({"likelihood": {"name": "logistic", "sigma": float("nan")}}, "--sigma nan must be a finite number"),
        (
            {"likelihood": {"name": "logistic-mixture", "logistic_components": 10**6}},
            "--logistic-components .* at most",
        ),
        ({"likelihood": {"name": "poisson"}}, "--likelihood 'poisson' is not known: use one of bernoulli, "),
        ({"likelihood": {"gaussian_variance": "pixel"}}, "--gaussian-variance is a setting of --likelihood gaussian"),
        (
            {"data": {"dequantize": True}},
            "--dequantize is for continuous likelihoods \\(.*gaussian.*\\); --likelihood bernoulli already",
        ),
    ],
)
def test_bad_settings_explain_themselves(flags: dict, message: str) -> None:
    with pytest.raises(VaekitError, match=message):
        resolve(preset="mlp", flags=flags)


def test_unknown_preset_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(VaekitError, match="unknown preset 'mpl'"):
        resolve(preset="mpl")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(VaekitError, match="not valid TOML"):
        resolve(config_file=bad)
    with pytest.raises(VaekitError, match="does not exist"):
        resolve(config_file=tmp_path / "missing.toml")


def test_presets_match_the_tutorials() -> None:
    mlp = preset_config("mlp")
    assert (mlp.model.hidden_sizes, mlp.model.latent_dim, mlp.likelihood.name) == ((400,), 20, "bernoulli")
    assert (mlp.train.lr, mlp.train.batch_size, mlp.train.epochs) == (1e-3, 128, 10)
    fashion = preset_config("conv-fashion")
    assert fashion.model.conv_channels == (32, 64, 72, 64) and fashion.model.conv_strides == (1, 2, 2, 1)
    assert (fashion.train.batch_size, fashion.train.epochs, fashion.model.latent_dim) == (100, 30, 64)
    px32 = preset_config("conv-32px")
    assert px32.data.image_size == 32 and px32.data.pixel_range == "symmetric"
    assert px32.likelihood.settings.sigma == pytest.approx(mse_kl_sigma(1024, 128)) == pytest.approx(0.4**0.5)
    assert (px32.train.lr, px32.train.batch_size, px32.train.beta) == (1e-4, 64, 1.0)


def test_cross_section_rules_hold_on_construction() -> None:
    """The Python API cannot build a config the CLI would refuse."""
    from vaekit.config import DataConfig, TrainConfig

    with pytest.raises(VaekitError, match="add --pixel-range symmetric"):
        RunConfig(likelihood=choice("likelihood", "logistic"))
    with pytest.raises(VaekitError, match="--free-bits needs"):
        RunConfig(train=TrainConfig(free_bits=0.1), prior=choice("prior", "vamp"))
    with pytest.raises(VaekitError, match="add --pixel-range symmetric"):
        dataclasses.replace(
            RunConfig(data=DataConfig(pixel_range="symmetric"), likelihood=choice("likelihood", "logistic")),
            data=DataConfig(),
        )


def test_a_later_layer_may_fix_what_an_earlier_one_broke(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    # the form written before the likelihoods were plug-ins: [model] likelihood and its settings
    toml.write_text('[model]\nlikelihood = "logistic"\nsigma = 0.3\n')  # alone it needs --pixel-range symmetric
    config = resolve(preset="mlp", config_file=toml, flags={"data": {"pixel_range": "symmetric"}})
    assert (config.likelihood, config.data.pixel_range) == (choice("likelihood", "logistic", sigma=0.3), "symmetric")
    with pytest.raises(VaekitError, match="add --pixel-range symmetric"):
        resolve(preset="mlp", config_file=toml)


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("train = 3\n")
    with pytest.raises(VaekitError, match=r"\[train\] must be a table"):
        resolve(config_file=toml)


@pytest.mark.parametrize("device", ["mps", "tpu", "gpu0"])
def test_devices_vaekit_cannot_run_on_are_refused(device: str) -> None:
    from vaekit.devices import resolve_device

    with pytest.raises(VaekitError, match="use auto, cpu, cuda"):
        resolve(preset="mlp", flags={"train": {"device": device}})
    with pytest.raises(VaekitError, match="use auto, cpu, cuda"):
        resolve_device(device)
