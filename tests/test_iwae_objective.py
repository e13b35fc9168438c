"""The importance-weighted training objective (issue 6): checked against the ELBO it generalises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, resolve
from vaekit.data import load_dataset
from vaekit.data.transforms import to_model_input
from vaekit.distributions import standard_normal_log_prob
from vaekit.errors import VaekitError
from vaekit.models import build_model
from vaekit.train import fit


def tiny_model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_model(ModelConfig(hidden_sizes=(32,), latent_dim=3), (1, 8, 8))


def batch(n: int) -> torch.Tensor:
    return to_model_input(torch.from_numpy(blob_images(n, side=8)[0]), DataConfig())


def test_k1_is_the_single_sample_elbo_with_a_sampled_kl() -> None:
    model, x = tiny_model(), batch(6)
    terms = model.iwae(x, k=1, generator=torch.Generator().manual_seed(4))
    posterior = model.encode(x)
    eps = torch.randn((1, 6, 3), generator=torch.Generator().manual_seed(4))
    z = (posterior.mu + posterior.std * eps)[0]
    recon = -model.log_likelihood(x, model.decode(z))
    sampled_kl = posterior.log_prob(z) - standard_normal_log_prob(z)
    assert torch.allclose(terms.loss, recon + sampled_kl, atol=1e-4)
    assert torch.allclose(terms.recon_nats, recon, atol=1e-4)


def test_k1_equals_the_elbo_in_expectation() -> None:
    model = tiny_model()
    x = batch(1).expand(20000, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        iwae_1 = model.iwae(x, k=1, generator=generator).loss.mean().item()
        elbo = model.elbo(x, generator=generator).loss.mean().item()
    assert iwae_1 == pytest.approx(elbo, abs=0.05)


def test_more_samples_give_a_tighter_bound() -> None:
    model, x = tiny_model(), batch(200)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        losses = [model.iwae(x, k=k, generator=generator).loss.mean().item() for k in (1, 5, 50)]
    assert losses[0] > losses[1] > losses[2]


def test_training_with_the_iwae_objective(tmp_path: Path) -> None:
    images, labels = blob_images(400, side=12)
    np.savez(tmp_path / "b.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(tmp_path / "b.npz"), val_size=40),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=4),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3, objective="iwae", iwae_samples=5, checkpoint_every=0),
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    model = build_model(config.model, splits.shape)
    reports = fit(model, splits, config, progress=False)
    assert reports[-1].val.nelbo_nats < reports[0].val.nelbo_nats
    # The training loss is the IWAE bound, never above the ELBO estimate from the same samples.
    assert reports[-1].train_loss <= reports[-1].train_recon_nats + reports[-1].train_kl_nats + 1.0


@pytest.mark.parametrize("flags", [{"beta": 0.5}, {"free_bits": 0.1}, {"warmup_steps": 10}])
def test_iwae_refuses_elbo_only_settings(flags: dict) -> None:
    with pytest.raises(VaekitError, match="--objective iwae trains the bound itself"):
        resolve(preset="mlp", flags={"train": {"objective": "iwae", **flags}})
