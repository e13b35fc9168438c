"""The CUDA paths against the CPU's: every model family computes the same ELBO and IWAE terms on
the GPU as on the CPU from the same noise, bf16 autocast keeps the figures in fp32, and training,
evaluation, sampling, resuming and a one-process nccl run work end to end on a GPU.

Marked `cuda`: skipped where torch sees no GPU (conftest.py), run by benchmarks/gpu_check.sh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from tests.test_resume import wait_for_mid_epoch_snapshot
from vaekit.config import DataConfig, ModelConfig
from vaekit.data.transforms import to_model_input
from vaekit.methods import choice
from vaekit.models import build_model

pytestmark = pytest.mark.cuda

SIDE = 12
FAMILIES = {
    "mlp": ModelConfig(hidden_sizes=(64,), latent_dim=4),
    "conv": ModelConfig(architecture="conv", conv_channels=(8, 16), latent_dim=4),
    "resnet": ModelConfig(architecture="resnet", conv_channels=(8, 16), latent_dim=4),
    "ladder": ModelConfig(hidden_sizes=(64,), latent_dim=6, stochastic_layers=2, top_latent_dim=3, top_hidden_size=32),
    "pixel-context": ModelConfig(hidden_sizes=(64,), latent_dim=4, pixel_context_layers=2, pixel_context_channels=8),
    "gaussian-pixel": ModelConfig(hidden_sizes=(64,), latent_dim=4),
    "logistic-mixture": ModelConfig(hidden_sizes=(64,), latent_dim=4),
    "mixture-prior": ModelConfig(hidden_sizes=(64,), latent_dim=4),
    "vamp-prior": ModelConfig(hidden_sizes=(64,), latent_dim=4),
}
LIKELIHOODS = {
    "gaussian-pixel": choice("likelihood", "gaussian", variance="pixel"),
    "logistic-mixture": choice("likelihood", "logistic-mixture"),
}
PRIORS = {
    "mixture-prior": choice("prior", "mixture", components=3),
    "vamp-prior": choice("prior", "vamp", components=3),
}
# cuDNN convolutions run in TF32 by default (10-bit mantissa): a relative error near 1e-3.
RELATIVE = 3e-3


def batch() -> torch.Tensor:
    return to_model_input(torch.from_numpy(blob_images(16, side=SIDE)[0]), DataConfig())  # (16, 1, 12, 12)


def on_both(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    config, prior, likelihood = FAMILIES[name], PRIORS.get(name), LIKELIHOODS.get(name)
    cpu = build_model(config, (1, SIDE, SIDE), prior=prior, likelihood=likelihood).eval()
    gpu = build_model(config, (1, SIDE, SIDE), prior=prior, likelihood=likelihood).eval()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def assert_close(cpu: torch.Tensor, gpu: torch.Tensor) -> None:
    assert gpu.is_cuda and gpu.dtype == torch.float32
    assert torch.isfinite(gpu).all()
    assert torch.allclose(gpu.cpu(), cpu, rtol=RELATIVE, atol=RELATIVE * cpu.abs().mean().item())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_elbo_terms_on_cuda_equal_the_cpus_from_the_same_noise(family: str) -> None:
    cpu, gpu = on_both(family)
    x = batch()
    eps = torch.randn((len(x), cpu.noise_dim), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = cpu.elbo(x, eps=eps)
        got = gpu.elbo(x.cuda(), eps=eps.cuda())
    for name in ("loss", "recon_nats", "kl_nats"):
        assert_close(getattr(expected, name), getattr(got, name))


@pytest.mark.parametrize("family", ["mlp", "conv", "ladder"])
def test_iwae_on_cuda_equals_the_cpus_from_the_same_noise(family: str) -> None:
    cpu, gpu = on_both(family)
    x, k = batch(), 5
    eps = torch.randn((k, len(x), cpu.noise_dim), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close(cpu.iwae(x, k, eps=eps).loss, gpu.iwae(x.cuda(), k, eps=eps.cuda()).loss)


@pytest.mark.parametrize("family", ["mlp", "conv", "pixel-context"])
def test_bf16_autocast_on_cuda_reports_fp32_figures_near_the_fp32_ones(family: str) -> None:
    _, gpu = on_both(family)
    x = batch().cuda()
    eps = torch.randn((len(x), gpu.noise_dim), generator=torch.Generator("cuda").manual_seed(1), device="cuda")
    with torch.no_grad():
        full = gpu.elbo(x, eps=eps).loss
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = gpu.elbo(x, eps=eps).loss
    assert half.dtype == torch.float32  # the likelihood and the KL stay fp32 under autocast
    assert torch.allclose(half, full, rtol=2e-2)  # bf16 keeps 8 bits of mantissa in the network


def test_sampling_and_drawing_on_cuda_use_a_cuda_generator() -> None:
    _, gpu = on_both("pixel-context")
    generator = torch.Generator("cuda").manual_seed(3)
    drawn = gpu.sample(6, generator=generator, draw=True)  # (6, 1, 12, 12)
    again = gpu.sample(6, generator=torch.Generator("cuda").manual_seed(3), draw=True)
    assert drawn.is_cuda and drawn.shape == (6, 1, SIDE, SIDE)
    assert torch.equal(drawn, again)  # seeded on the GPU: the same draw twice


def vaekit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(6000, side=SIDE, seed=4)
    path = tmp_path_factory.mktemp("cuda") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


TRAIN = ["--hidden-sizes", "64", "--latent-dim", "4", "--batch-size", "64", "--val-size", "100", "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_interrupt_resume_evaluate_and_sample_on_cuda(blobs: Path, tmp_path: Path, precision: str) -> None:
    out = tmp_path / "run"
    flags = [*TRAIN, "--batch-size", "16", "--epochs", "4", "--checkpoint-every", "5", "--device", "cuda"]
    command = [sys.executable, "-m", "vaekit", "train", "--dataset", str(blobs), *flags, "--precision", precision]
    process = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_mid_epoch_snapshot(out, process, min_step=10)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    resumed = vaekit("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert json.loads((out / "summary.json").read_text())["device"].startswith("cuda")
    evaluated = vaekit("evaluate", "--run", str(out), "--device", "cuda", "--k", "20", "--images", "200")
    assert evaluated.returncode == 0, evaluated.stderr
    sampled = vaekit("sample", "--run", str(out), "--device", "cuda", "-n", "8", "--out", str(tmp_path / "s.png"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.slow
def test_a_run_trained_on_cuda_loads_and_scores_the_same_on_the_cpu(blobs: Path, tmp_path: Path) -> None:
    import vaekit as api

    out = tmp_path / "run"
    done = vaekit("train", "--dataset", str(blobs), *TRAIN, "--device", "cuda", "--epochs", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    on_gpu, on_cpu = api.load_run(out, device="cuda"), api.load_run(out, device="cpu")
    assert on_gpu.model.device.type == "cuda" and on_cpu.model.device.type == "cpu"
    x = batch()
    eps = torch.randn((len(x), on_cpu.model.noise_dim), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert_close(on_cpu.model.elbo(x, eps=eps).loss, on_gpu.model.elbo(x.cuda(), eps=eps.cuda()).loss)


@pytest.mark.slow
def test_one_process_under_torchrun_trains_on_cuda_through_nccl(blobs: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
    command += ["-m", "vaekit", "train", "--dataset", str(blobs), *TRAIN, "--device", "cuda", "--epochs", "2"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(np.isfinite(line["val_nelbo_nats"]) for line in lines)
