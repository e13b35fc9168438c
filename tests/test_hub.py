"""Runs on the Hugging Face Hub, without the network: `vaekit push` against the folder it hands
huggingface_hub (its files, its model card, nothing unsafe or private), the upload call itself
with huggingface_hub's client replaced, and `hf://` loading offline from a populated cache,
exactly as huggingface_hub lays one out. No test here reaches the real Hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.errors import VaekitError
from vaekit.training.api import fit

huggingface_hub = pytest.importorskip("huggingface_hub")

from vaekit.hub import parse_hub_name, stage  # noqa: E402
from vaekit.loading import load_run  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    images, labels = blob_images(240, side=8, seed=2)
    fit(images, labels, out=root / "run", epochs=2, latent_dim=2, hidden_sizes=(16,), seed=0)
    return root / "run"


def cache_run(cache: Path, repo: str, files: Path) -> Path:
    """What huggingface_hub leaves after downloading `repo`: refs/main naming a snapshot folder."""
    model = cache / f"models--{repo.replace('/', '--')}"
    (model / "refs").mkdir(parents=True)
    (model / "refs" / "main").write_text(COMMIT)
    shutil.copytree(files, model / "snapshots" / COMMIT)
    return model / "snapshots" / COMMIT


def test_the_uploaded_folder_holds_the_run_its_card_and_nothing_private(finished: Path) -> None:
    folder = stage(finished, "me/blobs-vae", "mit")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "checkpoints/best.safetensors",
        "config.json",
        "metrics.jsonl",
        "pictures/recon.png",
        "pictures/samples.png",
        "summary.json",
    ]  # no data.npz, no resume snapshot, no pickle
    assert json.loads((folder / "config.json").read_text())["data"]["dataset"] == "data.npz"  # no local path
    card = (folder / "README.md").read_text()
    summary = json.loads((finished / "summary.json").read_text())
    assert card.startswith("---\nlibrary_name: vaekit\nlicense: mit\n")
    assert f"| test -ELBO | {summary['test_nelbo_nats']:.2f} nats per image | end of training" in card
    assert 'vaekit.load_run("hf://me/blobs-vae")' in card and "![samples](pictures/samples.png)" in card
    assert "the uploader's own data (data.npz; not uploaded)" in card and "| `model.latent_dim` | `2` |" in card


def test_push_hands_that_folder_to_huggingface_hub(
    finished: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: dict[str, Any] = {}

    class FakeApi:
        def __init__(self, **settings: Any) -> None:
            sent["settings"] = settings

        def create_repo(self, repo_id: str, private: bool, exist_ok: bool) -> None:
            sent["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id: str, folder_path: Path, commit_message: str) -> str:
            sent["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
            return f"https://huggingface.co/{repo_id}/commit/{COMMIT}"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main(["push", "--run", str(finished), "--repo", "me/blobs-vae", "--license", "mit", "--private"]) == 0
    assert sent["repo"] == ("me/blobs-vae", True, True) and sent["settings"] == {"library_name": "vaekit"}
    staged = stage(finished, "me/blobs-vae", "mit")
    assert sent["files"] == sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    assert "load it with vaekit.load_run('hf://me/blobs-vae')" in capsys.readouterr().out


def test_an_hf_run_loads_offline_from_the_cache_and_every_command_takes_it(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache_run(tmp_path / "cache", "me/blobs-vae", stage(finished, "me/blobs-vae", "mit"))
    pulled, local = load_run("hf://me/blobs-vae"), load_run(finished)
    weights = zip(pulled.model.state_dict().values(), local.model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)
    assert main(["sample", "--run", "hf://me/blobs-vae", "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sample", "--run", "hf://me/not-cached", "-n", "4", "--out", "s.png"],
            "is not in the local Hugging Face cache",
        ),
        (
            ["sample", "--run", "hf://just-a-name", "-n", "4", "--out", "s.png"],
            "is not a Hub model name: write hf://OWNER/NAME",
        ),
        (["push", "--run", "RUN", "--repo", "me/a/b"], "is not a Hub model name"),
        (["push", "--run", "UNFINISHED", "--repo", "me/x"], "has not finished (no summary.json)"),
        (
            ["push", "--run", "USER_CODE", "--repo", "me/x"],
            "name the file to upload with --code tests/user_networks.py",
        ),
    ],
)
def test_bad_hub_input_is_one_line(
    finished: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished, unfinished)
    (unfinished / "summary.json").unlink()
    user_code = tmp_path / "user-code"
    shutil.copytree(finished, user_code)
    config = json.loads((user_code / "config.json").read_text())
    config["model"]["architecture"] = "tests.user_networks:small_conv"
    (user_code / "config.json").write_text(json.dumps(config))
    named = {"RUN": str(finished), "UNFINISHED": str(unfinished), "USER_CODE": str(user_code)}
    assert main([named.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_network_from_user_code_is_pushed_only_with_its_module(finished: Path, tmp_path: Path) -> None:
    user_code = tmp_path / "user-code"
    shutil.copytree(finished, user_code)
    config = json.loads((user_code / "config.json").read_text())
    config["model"]["architecture"] = "tests.user_networks:small_conv"
    (user_code / "config.json").write_text(json.dumps(config))
    module = Path(__file__).parent / "user_networks.py"
    folder = stage(user_code, "me/conv", "apache-2.0", code=module)
    assert (folder / "user_networks.py").read_text() == module.read_text()
    assert "uploaded as `user_networks.py`" in (folder / "README.md").read_text()
    with pytest.raises(VaekitError, match="is not a Python file"):
        stage(user_code, "me/conv", "mit", code=tmp_path / "nets.txt")


def test_hub_names_parse_with_a_revision() -> None:
    assert parse_hub_name("hf://me/vae@v1.0") == ("me/vae", "v1.0")
    assert parse_hub_name(Path("hf://me/vae")) == ("me/vae", None)  # a Path keeps one slash
