"""The importance-weighted bound (Burda et al. 2016), one set of tests for both of its uses: the
evaluation estimate of log p(x) (metrics/likelihood.py) and the training objective (model.iwae).
Each is checked against the ELBO it generalises and against log-weights computed by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.data.transforms import to_model_input
from vaekit.distributions import standard_normal_log_prob
from vaekit.errors import VaekitError
from vaekit.methods import choice
from vaekit.metrics import likelihood
from vaekit.metrics.likelihood import iwae_over, iwae_per_image
from vaekit.models import VAE, build_model, build_run_model
from vaekit.objectives import iwae_bound
from vaekit.presets import resolve
from vaekit.training.loop import train_model

DATA = DataConfig()

# -log of the K-sample bound per image, (B,): the evaluation estimate and the training loss.
Bound = Callable[[VAE, torch.Tensor, int, torch.Generator], torch.Tensor]
BOUNDS: dict[str, Bound] = {
    "evaluation": lambda model, x, k, generator: -iwae_per_image(model, x, k, generator).float(),
    "training": lambda model, x, k, generator: model.iwae(x, k, generator=generator).loss,
}


def tiny_model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden_sizes=(32,), latent_dim=3), (1, 8, 8)).eval()


def blobs(n: int) -> np.ndarray:
    return blob_images(n, side=8)[0]


def batch(n: int) -> torch.Tensor:
    return to_model_input(torch.from_numpy(blobs(n)), DATA)


def test_the_bound_of_one_sample_is_its_log_weight_and_of_equal_weights_that_weight() -> None:
    log_w = torch.randn(1, 5)
    assert torch.allclose(iwae_bound(log_w), log_w[0])
    assert torch.allclose(iwae_bound(torch.full((7, 2), -3.0)), torch.full((2,), -3.0))  # log-mean-exp


@pytest.mark.parametrize("use", BOUNDS)
def test_one_sample_is_the_log_weight_computed_by_hand(use: str) -> None:
    model, x = tiny_model(), batch(6)
    with torch.no_grad():
        got = BOUNDS[use](model, x, 1, torch.Generator().manual_seed(4))
        posterior = model.encode(x)
        eps = torch.randn((1, 6, 3), generator=torch.Generator().manual_seed(4))  # the same draw
        z = (posterior.mu + posterior.std * eps)[0]  # (B, Z)
        recon = -model.log_likelihood(x, model.decode(z))
        sampled_kl = posterior.log_prob(z) - standard_normal_log_prob(z)
    assert torch.allclose(got, recon + sampled_kl, atol=1e-4)


@pytest.mark.parametrize("use", BOUNDS)
def test_one_sample_equals_the_closed_form_elbo_in_expectation(use: str) -> None:
    model = tiny_model()
    x = batch(1).expand(20000, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bound = BOUNDS[use](model, x, 1, generator).mean().item()
        nelbo = model.elbo(x, generator=generator).nelbo_nats.mean().item()
    assert bound == pytest.approx(nelbo, abs=0.05)


@pytest.mark.parametrize("use", BOUNDS)
def test_more_samples_give_a_tighter_bound(use: str) -> None:
    model, x = tiny_model(), batch(200)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bounds = [BOUNDS[use](model, x, k, generator).mean().item() for k in (1, 10, 100)]
    assert bounds[0] > bounds[1] > bounds[2]


def test_the_training_loss_reports_the_elbo_parts_of_the_same_samples() -> None:
    model, x = tiny_model(), batch(6)
    with torch.no_grad():
        terms = model.iwae(x, k=1, generator=torch.Generator().manual_seed(4))
        eps = torch.randn((1, 6, 3), generator=torch.Generator().manual_seed(4))
        posterior = model.encode(x)
        z = (posterior.mu + posterior.std * eps)[0]
    assert torch.allclose(terms.recon_nats, -model.log_likelihood(x, model.decode(z)), atol=1e-4)
    assert torch.allclose(terms.kl_nats, posterior.kl_per_dim().sum(-1))


def test_chunking_bounds_memory_without_changing_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    images = blobs(16)
    whole = iwae_over(model, images, DATA, k=500, batch_size=16).nll_nats
    monkeypatch.setattr(likelihood, "MAX_DECODED_VALUES", 16 * 64 * 7)  # chunks of 7 samples
    assert likelihood._chunk_size(500, 16, 64) == 7
    chunked = iwae_over(model, images, DATA, k=500, batch_size=16).nll_nats
    assert chunked == pytest.approx(whole, abs=0.05)  # same estimator, different noise


def test_the_standard_error_is_the_spread_between_images() -> None:
    model = tiny_model()
    images = blobs(40)
    summary = iwae_over(model, images, DATA, k=5, batch_size=40, seed=2)
    # With one batch, the per-image values are one call with the same seed.
    x = to_model_input(torch.from_numpy(images), DATA)
    per_image = iwae_per_image(model, x, 5, torch.Generator().manual_seed(2)).double()
    assert summary.nll_nats == pytest.approx(-per_image.mean().item(), rel=1e-6)
    assert summary.standard_error_nats == pytest.approx(per_image.std().item() / math.sqrt(40), rel=1e-6)
    # The same image 40 times: no spread between images, only Monte Carlo noise.
    same = iwae_over(model, np.repeat(images[:1], 40, axis=0), DATA, k=5000, batch_size=40)
    assert same.standard_error_nats < 0.1 * summary.standard_error_nats


def test_bits_per_dim_of_the_estimate_only_where_it_is_a_likelihood() -> None:
    binary = iwae_over(tiny_model(), blobs(8), DataConfig(binarize=True), k=5)
    assert binary.figure == "likelihood"
    assert binary.bits_per_dim == pytest.approx(binary.nll_nats / (64 * math.log(2)))
    grey = iwae_over(tiny_model(), blobs(8), DATA, k=5)
    assert (grey.figure, grey.bits_per_dim) == ("cross-entropy", None)


def test_training_with_the_iwae_objective(tmp_path: Path) -> None:
    images, labels = blob_images(400, side=12)
    np.savez(tmp_path / "b.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(tmp_path / "b.npz"), val_size=40),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=4),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3, iwae_samples=5, checkpoint_every=0),
        objective=choice("objective", "iwae"),
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    model = build_run_model(config, splits.shape)
    reports = train_model(model, splits, config, progress=False)
    assert reports[-1].val.nelbo_nats < reports[0].val.nelbo_nats
    # The training loss is the IWAE bound, never above the ELBO estimate from the same samples.
    assert reports[-1].train_loss <= reports[-1].train_recon_nats + reports[-1].train_kl_nats + 1.0


@pytest.mark.parametrize("flags", [{"beta": 0.5}, {"free_bits": 0.1}, {"warmup_steps": 10}])
def test_iwae_refuses_elbo_only_settings(flags: dict) -> None:
    with pytest.raises(
        VaekitError, match="--objective iwae has weights of its own: --beta, --warmup-steps and --free-bits"
    ):
        resolve(preset="mlp", flags={"train": {"objective": "iwae", **flags}})
