"""Learned priors (issue 6): checked against closed forms and by-hand mixtures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.distributions import DiagonalGaussian, kl_standard_normal
from vaekit.errors import VaekitError
from vaekit.methods import choice
from vaekit.models import build_model, build_run_model
from vaekit.presets import resolve
from vaekit.priors import MixturePrior, monte_carlo_kl
from vaekit.training.loop import train_model


def standard_normal_as_mixture(latent_dim: int) -> MixturePrior:
    prior = MixturePrior(latent_dim, components=1)
    with torch.no_grad():
        prior.means.zero_()
    return prior


def test_monte_carlo_kl_matches_the_closed_form_for_a_standard_normal_prior() -> None:
    mu = torch.tensor([[0.7, -1.2, 0.1]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.4, 0.0]], dtype=torch.float64)
    posterior = DiagonalGaussian(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    z = posterior.rsample(torch.Generator().manual_seed(0))
    prior = standard_normal_as_mixture(3).double()
    estimate = monte_carlo_kl(posterior.log_prob(z), prior.log_prob(z)).mean()
    assert estimate.item() == pytest.approx(kl_standard_normal(mu, logvar).sum().item(), abs=0.02)


def test_mixture_log_prob_by_hand() -> None:
    prior = MixturePrior(1, components=2).double()
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-2.0], [1.0]]))
        prior.logvars.copy_(torch.tensor([[0.0], [math.log(0.25)]], dtype=torch.float64))
        prior.logits.copy_(torch.tensor([math.log(0.3), math.log(0.7)], dtype=torch.float64))

    def normal(z: float, m: float, s: float) -> float:
        return math.exp(-0.5 * ((z - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    for z in (-2.5, 0.0, 1.2):
        by_hand = math.log(0.3 * normal(z, -2.0, 1.0) + 0.7 * normal(z, 1.0, 0.5))
        assert prior.log_prob(torch.tensor([[z]], dtype=torch.float64)).item() == pytest.approx(by_hand, rel=1e-9)


def test_mixture_samples_follow_the_weights() -> None:
    prior = MixturePrior(2, components=2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]))
        prior.logvars.fill_(math.log(0.01))
        prior.logits.copy_(torch.tensor([math.log(0.25), math.log(0.75)]))
    z = prior.sample(20_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (z[:, 0] > 0).float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_training_with_a_mixture_prior_learns_the_prior(tmp_path: Path) -> None:
    images, labels = blob_images(400, side=12)
    np.savez(tmp_path / "b.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(tmp_path / "b.npz"), val_size=40),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=2),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3, checkpoint_every=0),
        prior=choice("prior", "mixture", components=4),
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    model = build_run_model(config, splits.shape)
    before = model.prior.means.detach().clone()
    reports = train_model(model, splits, config, progress=False)
    assert reports[-1].val.nelbo_nats < reports[0].val.nelbo_nats
    assert not torch.equal(before, model.prior.means)  # the prior's parameters are trained
    assert model.sample(5).shape == (5, 1, 12, 12)
    with torch.no_grad():  # IWAE with K = 1 is the ELBO with the same Monte Carlo KL, in expectation
        x = torch.from_numpy(splits.val.array).float() / 255.0
        generator = torch.Generator().manual_seed(0)
        iwae = np.mean([model.iwae(x, 1, generator).loss.mean().item() for _ in range(200)])
        elbo = np.mean([model.elbo(x, generator=generator).loss.mean().item() for _ in range(200)])
    assert iwae == pytest.approx(elbo, rel=2e-3)


def test_free_bits_need_the_standard_prior() -> None:
    with pytest.raises(VaekitError, match="only --prior standard"):
        resolve(preset="mlp", flags={"model": {"prior": "mixture"}, "train": {"free_bits": 0.5}})


def test_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors() -> None:
    from vaekit.priors import VampPrior, mixture_log_prob

    torch.manual_seed(0)
    vamp = choice("prior", "vamp", components=4)
    model = build_model(ModelConfig(hidden_sizes=(16,), latent_dim=3), (1, 6, 6), prior=vamp)
    assert isinstance(model.prior, VampPrior)
    z = torch.randn(7, 3)
    with torch.no_grad():
        # By hand: an equal-weight mixture of the encoder's Gaussians at each pseudo-input.
        per_input = [model.encode(u[None]) for u in model.prior.pseudo_inputs]
        densities = torch.stack(
            [DiagonalGaussian(q.mu.expand(7, 3), q.logvar.expand(7, 3)).log_prob(z) for q in per_input]
        )  # (K, 7)
        by_hand = torch.logsumexp(densities, dim=0) - math.log(4)
        assert torch.allclose(model.prior.log_prob(z, model.encode), by_hand, atol=1e-5)
        means = torch.cat([q.mu for q in per_input])
        logvars = torch.cat([q.logvar for q in per_input])
        assert torch.allclose(mixture_log_prob(z, means, logvars, torch.zeros(4)), by_hand, atol=1e-5)
    # Gradients reach the pseudo-inputs through the KL term.
    x = torch.rand(5, 1, 6, 6)
    model.elbo(x, generator=torch.Generator().manual_seed(0)).loss.mean().backward()
    assert model.prior.pseudo_inputs.grad is not None and model.prior.pseudo_inputs.grad.abs().sum() > 0
    assert model.sample(4).shape == (4, 1, 6, 6)


def test_vamp_prior_checkpoint_round_trip(tmp_path: Path) -> None:
    from vaekit.checkpoint import load_checkpoint, save_checkpoint

    config = RunConfig(model=ModelConfig(hidden_sizes=(16,), latent_dim=3), prior=choice("prior", "vamp", components=4))
    model = build_run_model(config, (1, 6, 6))
    save_checkpoint(tmp_path / "c.safetensors", model, config, {"epoch": 1})
    loaded, _, _ = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(loaded.prior.pseudo_inputs, model.prior.pseudo_inputs)
