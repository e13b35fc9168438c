"""The user's own networks: trained by factory name, stored by name, loaded back only with consent;
a checkpoint alone never imports or runs anything."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from tests.user_networks import small_conv
from vaekit.checkpoint import read_checkpoint, write_checkpoint
from vaekit.cli import main
from vaekit.config import RunConfig
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.models.custom import NetworkSpec

FACTORY = "tests.user_networks:small_conv"


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("custom")
    images, _ = blob_images(200, side=16)
    np.save(root / "blobs.npy", images[:, 0])  # (N, H, W)
    run = root / "run"
    flags = ["--architecture", FACTORY, "--latent-dim", "4", "--epochs", "1", "--quiet", "--val-size", "20"]
    assert main(["train", "--dataset", str(root / "blobs.npy"), *flags, "--out", str(run)]) == 0
    return run


def plant(run: Path, architecture: str, into: Path) -> Path:
    """A copy of the run's checkpoint whose header names `architecture` as its network."""
    tensors, metadata = read_checkpoint(run / "checkpoints" / "best.safetensors")
    config = json.loads(metadata["config"])
    config["model"]["architecture"] = architecture
    path = into / "planted.safetensors"
    write_checkpoint(
        path,
        tensors,
        RunConfig.from_dict(config),
        tuple(json.loads(metadata["image_shape"])),  # type: ignore[arg-type]
        json.loads(metadata["info"]),
    )
    return path


def test_the_run_stores_the_factory_name_and_loads_it_with_consent(custom_run: Path) -> None:
    config = json.loads((custom_run / "config.json").read_text())
    assert config["model"]["architecture"] == FACTORY
    with pytest.raises(VaekitError, match="--trust-code"):
        load_run(custom_run)
    run = load_run(custom_run, trust_code=True)
    reference = small_conv  # the same factory, built here, must hold the run's weights
    encoder, _ = reference(NetworkSpec((1, 16, 16), 4, (1, 16, 16)))
    assert [p.shape for p in run.model.encoder.parameters()] == [p.shape for p in encoder.parameters()]
    x = run.prepare(run.load_data().test.array[:5])
    assert run.model.encode(x).mu.shape == (5, 4)


def test_the_cli_refuses_without_trust_code_and_works_with_it(
    custom_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for command in (["evaluate", "--run", str(custom_run), "--k", "5", "--no-quality"],):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--trust-code" in err and "Traceback" not in err
        assert main([*command, "--trust-code"]) == 0
    out = tmp_path / "s.png"
    assert main(["sample", "--run", str(custom_run), "--out", str(out)]) == 2
    assert main(["sample", "--run", str(custom_run), "--out", str(out), "--trust-code"]) == 0 and out.is_file()


def test_a_planted_checkpoint_imports_and_runs_nothing(
    custom_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that would leave a mark if it were ever imported.
    (tmp_path / "planted_payload.py").write_text(
        f"from pathlib import Path\nPath({str(tmp_path / 'ran')!r}).write_text('imported')\ndef build(spec): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[object] = []
    monkeypatch.setattr("os.system", lambda *args: calls.append(args) or 0)
    for target in ("os:system", "planted_payload:build"):
        planted = plant(custom_run, target, tmp_path)
        with pytest.raises(VaekitError, match="user code"):
            load_run(planted)
        assert main(["sample", "--run", str(planted), "--out", str(tmp_path / "x.png")]) == 2
    assert calls == []
    assert not (tmp_path / "ran").exists() and "planted_payload" not in sys.modules


def test_resume_needs_trust_code_too(custom_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(custom_run)]) == 2
    assert "--trust-code" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("tests.user_networks:wrong_encoder", r"must give \(2, 8\), the mean then the log-variance"),
        ("tests.user_networks:not_modules", "must return \\(encoder, decoder\\)"),
        ("tests.user_networks:missing", "has no 'missing'"),
        ("no_such_module_here:build", "cannot import 'no_such_module_here'"),
    ],
)
def test_factories_that_break_the_contract_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], factory: str, message: str
) -> None:
    images, _ = blob_images(30, side=16)
    np.save(tmp_path / "b.npy", images[:, 0])
    flags = ["--architecture", factory, "--latent-dim", "4", "--epochs", "1", "--batch-size", "8"]
    flags += ["--out", str(tmp_path / "r")]
    assert main(["train", "--dataset", str(tmp_path / "b.npy"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_fit_takes_the_factory_itself_and_stores_its_name(tmp_path: Path) -> None:
    from vaekit.training.api import fit

    images, labels = blob_images(120, side=16)
    run = fit(
        torch.from_numpy(images),
        labels,
        out=tmp_path / "r",
        architecture=small_conv,
        latent_dim=4,
        epochs=1,
        batch_size=16,
    )
    assert run.config.model.architecture == FACTORY
    with pytest.raises(VaekitError, match="lambda or defined inside a function"):
        fit(images, out=tmp_path / "l", architecture=lambda spec: None, epochs=1)
    assert not (tmp_path / "l").exists()
