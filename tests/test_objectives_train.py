"""Every objective trains through the CLI and from Python, with an MLP and a conv network; names
its own terms in metrics.jsonl and the training log; resumes exactly; and is refused, in one line,
where it does not apply."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vaekit
from tests.conftest import blob_images
from vaekit import methods
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.presets import resolve
from vaekit.training.loop import TrainingInterrupted
from vaekit.training.run import resume_run, train_run

# objective -> the per-item terms it reports besides the ELBO's parts
OBJECTIVES = {
    "annealed": ["capacity_nats"],
    "betatc": ["mi_nats", "tc_nats", "dwkl_nats"],
    "factorvae": ["tc_nats", "discriminator_nats"],
    "dip-i": ["dip_penalty"],
    "dip-ii": ["dip_penalty"],
    "infovae": ["mmd"],
    "wae": ["mmd"],
    "miwae": [],
    "piwae": [],
    "ciwae": [],
}
SMALL = ["--epochs", "1", "--batch-size", "32", "--val-size", "40"]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(240, side=16, seed=11)
    path = tmp_path_factory.mktemp("objectives") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


def figure_key(objective: str) -> str:
    """summary.json's figure: the -ELBO, or the reconstruction cost of a WAE (which has no ELBO)."""
    return "test_recon_nats" if objective == "wae" else "test_nelbo_nats"


def metric_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_the_objective_trains_an_mlp_from_the_cli_and_names_its_terms(
    objective: str, blobs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    flags = ["--iwae-samples", "2", "--iwae-groups", "2"] if objective in ("miwae", "piwae") else []
    flags += ["--iwae-samples", "3"] if objective == "ciwae" else []
    code = main(
        [
            "train",
            "--dataset",
            str(blobs),
            "--preset",
            "mlp",
            "--objective",
            objective,
            *SMALL,
            *flags,
            "--out",
            str(out),
        ]
    )
    log = capsys.readouterr()
    assert code == 0, log.err
    line = metric_lines(out)[-1]
    for term in OBJECTIVES[objective]:
        assert math.isfinite(line[f"train_{term}"]), term
        assert term in log.err  # the training log names it too
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary[figure_key(objective)])  # the plain -ELBO, whatever was trained (but a WAE)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_the_objective_trains_a_conv_network_from_python(objective: str, tmp_path: Path) -> None:
    images, labels = blob_images(160, side=16, seed=12)
    settings: dict[str, object] = {"iwae_samples": 2, "iwae_groups": 2} if objective in ("miwae", "piwae") else {}
    run = vaekit.fit(
        images,
        labels,
        out=tmp_path / "run",
        architecture="conv",
        conv_channels=(4, 8),
        conv_strides=(2, 2),
        latent_dim=4,
        objective=objective,
        epochs=1,
        batch_size=32,
        **settings,
    )
    assert math.isfinite(run.summary[figure_key(objective)])
    assert set(OBJECTIVES[objective]) <= {k.removeprefix("train_") for k in metric_lines(tmp_path / "run")[-1]}


def test_betatc_terms_sum_to_the_training_kl_estimate(blobs: Path, tmp_path: Path) -> None:
    """MI + TC + DWKL is the one-sample estimate of the KL whose closed form is train_kl_nats:
    over an epoch of a few hundred items they agree to Monte Carlo error."""
    main(
        [
            "train",
            "--dataset",
            str(blobs),
            "--preset",
            "mlp",
            "--objective",
            "betatc",
            *SMALL,
            "--out",
            str(tmp_path / "r"),
        ]
    )
    line = metric_lines(tmp_path / "r")[-1]
    total = line["train_mi_nats"] + line["train_tc_nats"] + line["train_dwkl_nats"]
    assert total == pytest.approx(line["train_kl_nats"], rel=0.25, abs=1.0)


class InterruptAtStep:
    """Ctrl-C as the user would press it, after the given optimiser step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_epoch_end(self, model: torch.nn.Module, report: object) -> None:
        pass

    def on_step(self, report: object) -> None:
        if getattr(report, "step") == self.step:  # noqa: B009  # a StepReport
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("objective", ["betatc", "annealed", "factorvae"])
def test_an_interrupted_run_resumes_to_the_same_weights_and_terms(objective: str, blobs: Path, tmp_path: Path) -> None:
    config = resolve(
        preset="mlp",
        flags={
            "data": {"dataset": str(blobs), "val_size": 40},
            "train": {"objective": objective, "epochs": 2, "batch_size": 32, "checkpoint_every": 0},
            "objective": {"capacity_steps": 5} if objective == "annealed" else {},
        },
    )
    train_run(config, tmp_path / "whole", progress=False)
    with pytest.raises(TrainingInterrupted):
        train_run(config, tmp_path / "cut", progress=False, callbacks=[InterruptAtStep(4)])
    resume_run(tmp_path / "cut", progress=False)
    whole, cut = (load_file(str(tmp_path / r / "checkpoints" / "last.safetensors")) for r in ("whole", "cut"))
    for name in whole:
        assert torch.equal(whole[name], cut[name]), name
    drop = ("epoch_seconds", "train_images_per_second")
    assert [{k: v for k, v in line.items() if k not in drop} for line in metric_lines(tmp_path / "cut")] == [
        {k: v for k, v in line.items() if k not in drop} for line in metric_lines(tmp_path / "whole")
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"train": {"objective": "betatc"}, "objective": {"tc_beta": -1.0}}, "--tc-beta -1.0 must be at least 0"),
        (
            {"train": {"objective": "elbo"}, "objective": {"tc_beta": 2.0}},
            "--tc-beta is a setting of --objective betatc",
        ),
        (
            {"train": {"objective": "dip-i"}, "objective": {"mmd_kernel": "rbf"}},
            "setting of --objective infovae or wae",
        ),
        ({"train": {"objective": "wae"}, "objective": {"wae_lambda": -1.0}}, "--wae-lambda -1.0 must be at least 0"),
        ({"train": {"objective": "infovae"}, "objective": {"wae_lambda": 3.0}}, "setting of --objective wae, not"),
        ({"train": {"objective": "wae"}, "model": {"stochastic_layers": 2}}, "written for one stochastic layer"),
        ({"train": {"objective": "betatc", "batch_size": 1}}, "needs --batch-size 2 or more"),
        ({"train": {"objective": "factorvae", "batch_size": 1}}, "--objective factorvae estimates over the batch"),
        (
            {"train": {"objective": "factorvae"}, "objective": {"discriminator_lr": 0.0}},
            "--discriminator-lr 0.0 must be more than 0",
        ),
        ({"train": {"objective": "betatc"}, "model": {"stochastic_layers": 2}}, "written for one stochastic layer"),
        ({"train": {"objective": "dip-ii"}, "model": {"prior": "mixture"}}, r"factorised N\(0, I\) prior"),
        ({"train": {"objective": "annealed", "beta": 4.0}}, "--objective annealed has weights of its own"),
        (
            {"train": {"objective": "ciwae"}, "objective": {"ciwae_beta": 1.5}},
            "--ciwae-beta 1.5 is too large: use at most 1",
        ),
    ],
)
def test_settings_that_do_not_apply_are_refused(flags: dict, message: str) -> None:
    with pytest.raises(VaekitError, match=message):
        resolve(preset="mlp", flags=flags)


def test_an_unknown_objective_is_one_line_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--objective", "factor-vae"]) == 2
    err = capsys.readouterr().err
    assert "--objective 'factor-vae' is not known: use one of" in err and len(err.strip().splitlines()) == 1
    assert all(name in err for name in methods.specs("objective"))


@pytest.mark.parametrize("objective", ["betatc", "factorvae"])
def test_evaluate_names_the_terms_of_the_objective_the_run_optimised(
    objective: str, blobs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(blobs),
                "--preset",
                "mlp",
                "--objective",
                objective,
                *SMALL,
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert main(["evaluate", "--run", str(run), "--k", "2", "--no-quality"]) == 0
    printed = capsys.readouterr().out
    figures = json.loads((run / "eval.json").read_text())["objective"]
    assert figures["name"] == objective and f"objective {objective}" in printed
    if objective == "betatc":
        for term in OBJECTIVES[objective]:
            assert math.isfinite(figures[term]) and term in printed
    else:  # the discriminator is not kept with the weights
        assert "discriminator" in figures["note"]


def test_a_wae_reports_its_reconstruction_and_mmd_and_says_it_has_no_likelihood_figure(
    blobs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wae"
    args = ["--dataset", str(blobs), "--preset", "mlp", "--objective", "wae", "--wae-lambda", "5", *SMALL]
    assert main(["train", *args, "--out", str(out)]) == 0
    log = capsys.readouterr().err + capsys.readouterr().out
    assert "no likelihood figure" in log
    summary = json.loads((out / "summary.json").read_text())
    assert "test_nelbo_nats" not in summary and summary["test_figure"] == "reconstruction"
    assert "no likelihood figure" in summary["figure_description"]
    assert main(["evaluate", "--run", str(out), "--k", "5", "--no-quality"]) == 0
    table = capsys.readouterr().out
    assert "none: a deterministic encoder has no ELBO" in table and "mmd" in table
    result = json.loads((out / "eval.json").read_text())
    assert not any(key.startswith("iwae") or "nelbo" in key for key in result)
    assert result["elbo_recon_at_mean_nats"] == pytest.approx(summary["test_recon_nats"], rel=1e-6)
    assert main(["score", "--run", str(out), "--out", str(tmp_path / "scores.csv")]) == 2
    assert "has none (a deterministic encoder)" in capsys.readouterr().err
    assert not (tmp_path / "scores.csv").exists()
