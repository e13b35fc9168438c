"""Shared fixtures: an isolated environment and tiny datasets written on the fly."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from vaekit.config import DataConfig
from vaekit.data.idx import encode_idx
from vaekit.metrics.likelihood import iwae_over

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip cleanly where torch sees no GPU (every CI machine)."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(no_gpu)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With VAEKIT_FAILURE_LOG set, each failure's name and traceback is appended to that file the
    moment it happens, not in the summary at the end: a GPU lease that runs out mid-suite
    (benchmarks/gpu_check.sh) still returns every failure so far. Under pytest-xdist only the
    controller writes, so no failure is logged twice."""
    path = os.environ.get("VAEKIT_FAILURE_LOG")
    if not path or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"=== FAILED {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache or reaches the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("VAEKIT_OFFLINE", "1")
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.delenv("VAEKIT_MIRROR", raising=False)


def blob_images(n: int, side: int = 28, channels: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: a bright square in one of 4 quadrants (the label), plus noise.

    Returns uint8 (n, channels, side, side) and int64 labels (n,).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 40, size=(n, channels, side, side)).astype(np.uint8)
    half = side // 2
    for i, label in enumerate(labels):
        top, left = (label // 2) * half, (label % 2) * half
        images[i, :, top : top + half, left : left + half] = 220
    return images, labels.astype(np.int64)


def write_idx_dataset(folder: Path, n_train: int = 300, n_test: int = 60, side: int = 28, gz: bool = True) -> Path:
    """The four MNIST-style files of a tiny blob dataset in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = blob_images(n_train, side, seed=1)
    test_x, test_y = blob_images(n_test, side, seed=2)
    arrays = {
        "train-images-idx3-ubyte": train_x[:, 0],
        "train-labels-idx1-ubyte": train_y.astype(np.uint8),
        "t10k-images-idx3-ubyte": test_x[:, 0],
        "t10k-labels-idx1-ubyte": test_y.astype(np.uint8),
    }
    for name, array in arrays.items():
        raw = encode_idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    return write_idx_dataset(tmp_path / "tiny-mnist")


@pytest.fixture
def blob_npz(tmp_path: Path) -> Path:
    images, labels = blob_images(240, side=28)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


def playwright_or_skip() -> ModuleType:
    """Playwright's sync API for the browser tests: skipped where chromium or playwright is
    missing, except on CI, where both are installed and a missing one must fail."""
    if os.environ.get("CI") == "true":
        from playwright import sync_api

        return sync_api
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


def train_briefly(model: torch.nn.Module, x: torch.Tensor, steps: int, lr: float = 3e-3) -> list[float]:
    """`steps` Adam steps on the ELBO of one batch x, noise from one seeded stream; the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss = model.elbo(x, generator=generator).loss.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def iwae_and_elbo(model: torch.nn.Module, x: torch.Tensor, k: int) -> tuple[float, float]:
    """The K-sample bound on log p(x) (vaekit's evaluation path, x in [0, 1] as 8-bit images) and a
    one-sample ELBO of the same batch, both in nats per image."""
    images = (x * 255).to(torch.uint8).numpy()
    estimate = iwae_over(model, images, DataConfig(), k=k, batch_size=len(x), seed=0)
    elbo = -model.elbo(x, generator=torch.Generator().manual_seed(9)).loss.mean().item()
    return -estimate.nll_nats, elbo
