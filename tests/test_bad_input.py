"""Every bad input a user can give: one line naming the problem and the fix, exit code 2, no
traceback, nothing written. Readers fed random bytes raise only VaekitError. Loading never
unpickles."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.conftest import blob_images, write_idx_dataset
from vaekit.checkpoint import load_checkpoint
from vaekit.data.arrays import load_array_file
from vaekit.data.download import download
from vaekit.data.folders import load_folder
from vaekit.errors import VaekitError
from vaekit.loading import load_run

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"


def vaekit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAEKIT_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def _png(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size[::-1], dtype=np.uint8)).save(path)


def _make(kind: str, root: Path) -> str:
    """Create the bad input `kind` under root; return the --dataset value (or '' for none)."""
    if kind == "truncated-idx":
        folder = write_idx_dataset(root / "idx", gz=False)
        raw = (folder / "train-images-idx3-ubyte").read_bytes()
        (folder / "train-images-idx3-ubyte").write_bytes(raw[: len(raw) // 2])
        return "mnist --data-dir idx"
    if kind == "corrupt-gz-idx":
        folder = write_idx_dataset(root / "idx")
        (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10)
        return "mnist --data-dir idx"
    if kind == "truncated-npz":
        images, _ = blob_images(20)
        np.savez(root / "a.npz", x=images[:, 0])
        raw = (root / "a.npz").read_bytes()
        (root / "a.npz").write_bytes(raw[: len(raw) // 2])
        return "a.npz"
    if kind == "unreadable-image":
        for i in range(4):
            _png(root / "imgs" / f"{i}.png", (8, 8))
        (root / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        return "imgs"
    if kind == "mixed-sizes":
        _png(root / "imgs" / "a.png", (8, 8))
        _png(root / "imgs" / "b.png", (9, 8))
        _png(root / "imgs" / "c.png", (8, 8))
        return "imgs"
    if kind == "empty-folder":
        (root / "imgs").mkdir()
        return "imgs"
    if kind == "one-image":
        _png(root / "imgs" / "a.png", (8, 8))
        return "imgs"
    if kind == "wrong-dtype":
        np.save(root / "a.npy", np.zeros((10, 8, 8), dtype=np.complex64))
        return "a.npy"
    if kind == "out-of-range":
        np.save(root / "a.npy", np.full((10, 8, 8), 3.0))
        return "a.npy"
    if kind == "wrong-shape":
        np.save(root / "a.npy", np.zeros((10, 8, 8, 5), dtype=np.uint8))
        return "a.npy"
    if kind == "ambiguous-layout":
        np.save(root / "a.npy", np.zeros((10, 3, 8, 3), dtype=np.uint8))
        return "a.npy"
    raise KeyError(kind)


DATA_FAULTS = {
    "truncated-idx": "is truncated",
    "corrupt-gz-idx": "damaged gzip",
    "truncated-npz": "is not a readable .npy/.npz file",
    "unreadable-image": "broken.jpg cannot be read",
    "mixed-sizes": "pass --image-size",
    "empty-folder": "no .png/.jpg images",
    "one-image": "need at least 3",
    "wrong-dtype": "save it as uint8",
    "out-of-range": "floats must lie in [0, 1]",
    "wrong-shape": "expected images (N, H, W), (N, H, W, C) or (N, C, H, W)",
    "ambiguous-layout": "say which with --array-layout nhwc or --array-layout nchw",
}

SETTING_FAULTS = {
    "unknown dataset": (["--dataset", "cifar-100"], "unknown dataset 'cifar-100'"),
    "unknown preset": (["--preset", "vq-vae"], "unknown preset 'vq-vae'"),
    "negative latent size": (["--latent-dim", "-1"], "--latent-dim -1 must be 0 or more"),
    "no latent with two layers": (
        ["--latent-dim", "0", "--stochastic-layers", "2"],
        "--latent-dim 0 has no latent to stack",
    ),
    "negative epochs": (["--epochs", "-2"], "--epochs -2 must be at least 1"),
    "batch larger than data": (["--dataset", "ok.npy", "--batch-size", "999"], "--batch-size 999 is larger"),
    "image too small for conv": (
        ["--dataset", "ok.npy", "--preset", "conv-32px", "--image-size", "4", "--batch-size", "8"],
        "too small for 4 stride-2 conv layers",
    ),
    "iaf without steps": (["--posterior", "iaf", "--flow-steps", "0"], "--flow-steps 0 must be at least 1"),
    "flow setting without a flow": (["--flow-steps", "3"], "--flow-steps is a setting of --posterior iaf"),
    "vmf on a circle of one dimension": (
        ["--posterior", "vmf", "--latent-dim", "1"],
        "--posterior vmf puts z on the sphere S^(Z-1) in R^Z, which needs --latent-dim 2",
    ),
    "vmf with a prior of its own": (["--posterior", "vmf", "--prior", "mixture"], "has its own prior"),
    "vmf on a ladder": (
        ["--posterior", "vmf", "--stochastic-layers", "2"],
        "--posterior vmf is written for one stochastic layer",
    ),
    "flow with a gaussian-only objective": (
        ["--posterior", "iaf", "--objective", "betatc"],
        "--objective betatc reads q(z|x)'s mean and variance, which only a Gaussian posterior gives (--posterior "
        "gaussian)",
    ),
    "a codebook of one code": (["--posterior", "vq", "--codebook-size", "1"], "--codebook-size 1 must be at least 2"),
    "vq on a ladder": (["--posterior", "vq", "--stochastic-layers", "2"], "leave out --stochastic-layers 2"),
    "vq with importance sampling": (
        ["--posterior", "vq", "--objective", "iwae"],
        "--objective iwae does not apply to --posterior vq",
    ),
    "prior epochs without codes": (
        ["--prior-epochs", "3"],
        "--prior-epochs trains a posterior family's own prior (--posterior vq)",
    ),
    "bad config file": (["--config", "bad.toml"], "is not valid TOML"),
    "mistyped setting in file": (["--config", "typo.toml"], "unknown setting train.epoch"),
}


def _assert_clean_failure(result: subprocess.CompletedProcess[str], fragment: str, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert not out.exists(), "a failed run must write nothing"


@pytest.mark.parametrize("kind", list(DATA_FAULTS))
def test_bad_data_is_one_clean_line(kind: str, tmp_path: Path) -> None:
    dataset = _make(kind, tmp_path).split()
    result = vaekit("train", "--dataset", *dataset, "--out", "run", cwd=tmp_path)
    _assert_clean_failure(result, DATA_FAULTS[kind], tmp_path / "run")


@pytest.mark.parametrize("case", list(SETTING_FAULTS))
def test_impossible_settings_are_one_clean_line(case: str, tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", blob_images(40, side=8)[0][:, 0])
    (tmp_path / "bad.toml").write_text("[train\n")
    (tmp_path / "typo.toml").write_text("[train]\nepoch = 3\n")
    args, fragment = SETTING_FAULTS[case]
    result = vaekit("train", *args, "--out", "run", cwd=tmp_path)
    _assert_clean_failure(result, fragment, tmp_path / "run")


# --- readers fed random bytes --------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_vaekit_errors(read: Callable[[], object]) -> None:
    with contextlib.suppress(VaekitError):  # anything else escaping fails the test
        read()


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".npy", ".npz"]))
def test_array_reader_with_random_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(raw)
    _only_vaekit_errors(lambda: load_array_file(path))


@FUZZ
@given(raw=st.binary(min_size=0, max_size=200))
def test_npy_header_then_random_bytes(tmp_path: Path, raw: bytes) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "a.npy"
    path.write_bytes(buffer.getvalue()[:128] + raw)
    _only_vaekit_errors(lambda: load_array_file(path))


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg"]))
def test_image_reader_with_random_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    (folder / f"x{suffix}").write_bytes(raw)
    _only_vaekit_errors(lambda: load_folder(folder, None, None))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_checkpoint_reader_with_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(raw)
    _only_vaekit_errors(lambda: load_checkpoint(path))


# --- loading never runs code ---------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["raw-pickle", "torch-zip"])
def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run" / "checkpoints"
    run_dir.mkdir(parents=True)
    target = run_dir / "best.safetensors"
    if container == "raw-pickle":
        target.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"weights": _Payload(marker)}, target)  # what `torch.save` checkpoints look like
    with pytest.raises(VaekitError, match="not a readable safetensors file"):
        load_run(tmp_path / "run")
    result = vaekit("sample", "--run", str(tmp_path / "run"), "--out", "s.png", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not marker.exists(), "unpickling ran code"


def test_the_source_never_unpickles() -> None:
    source = "\n".join(path.read_text() for path in SRC.rglob("*.py"))
    assert "import pickle" not in source
    assert re.findall(r"torch\.load\((?![^)]*weights_only=True)", source) == []
    assert re.findall(r"np\.load\((?![^)]*allow_pickle=False)", source) == []


def test_mismatched_tensors_are_an_error_not_a_partial_load(tmp_path: Path) -> None:
    from vaekit.checkpoint import save_checkpoint
    from vaekit.config import ModelConfig, RunConfig
    from vaekit.models import build_run_model

    config = RunConfig(model=ModelConfig(hidden_sizes=(16,), latent_dim=2))
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, build_run_model(config, (1, 8, 8)), config, {"epoch": 1})
    metadata = __import__("safetensors").safe_open(str(path), framework="pt").metadata()
    tensors = load_file(str(path))
    renamed = {k.replace("encoder.head", "encoder.heads"): v for k, v in tensors.items()}
    save_file(renamed, str(path), metadata=metadata)
    with pytest.raises(VaekitError, match="does not match its own config"):
        load_checkpoint(path)
    reshaped = dict(tensors, **{"decoder.head.bias": torch.zeros(3)})
    save_file(reshaped, str(path), metadata=metadata)
    with pytest.raises(VaekitError, match="wrong shape"):
        load_checkpoint(path)


# --- downloads cut off halfway -------------------------------------------------------------------


class _CutOffHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)  # then the connection closes early

    def log_message(self, *args: object) -> None:
        pass


def test_an_interrupted_download_leaves_no_partial_file(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOffHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
        url = f"http://127.0.0.1:{server.server_address[1]}/train-images-idx3-ubyte.gz"
        with pytest.raises(VaekitError, match="cut off after 1000 of 100000 bytes"):
            download(url, target, "0" * 64, progress=False)
        assert list(target.parent.iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()
