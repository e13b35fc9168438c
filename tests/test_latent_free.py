"""--latent-dim 0: no latent at all. With a pixel-context head this is a pixel-by-pixel model on
its own, the baseline that shows what a latent adds; its ELBO is then its exact log-likelihood."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.metrics.evaluation import collapse_warning, evaluate_run
from vaekit.metrics.likelihood import iwae_per_image
from vaekit.models import build_model
from vaekit.presets import resolve
from vaekit.training.run import train_run
from vaekit.viz.gallery import LATENT_PICTURES, PictureContext, draw, drawable

NO_LATENT = ModelConfig(hidden_sizes=(16,), latent_dim=0, pixel_context_layers=2, pixel_context_channels=8)


def test_without_a_latent_every_bound_is_the_exact_log_likelihood() -> None:
    torch.manual_seed(0)
    model = build_model(NO_LATENT, (1, 8, 8)).eval()
    x = to_model_input(torch.from_numpy(blob_images(5, side=8)[0]), DataConfig(binarize=True))
    with torch.no_grad():
        exact = model.log_likelihood(x, model.decode(torch.zeros(5, 0)))  # the decoder is a constant
        terms = model.elbo(x, generator=torch.Generator().manual_seed(1))
        estimate = iwae_per_image(model, x, 7, torch.Generator().manual_seed(2)).float()
    assert torch.equal(terms.kl_nats, torch.zeros(5))
    assert torch.allclose(-terms.nelbo_nats, exact) and torch.allclose(estimate, exact)
    assert model.sample(3, draw=True).shape == (3, 1, 8, 8)


def test_a_latent_needs_one_layer_and_the_standard_prior_to_be_dropped() -> None:
    assert resolve(preset="mlp", flags={"model": {"latent_dim": 0}}).model.latent_dim == 0
    with pytest.raises(VaekitError, match="--latent-dim 0 has no latent"):
        resolve(preset="mlp", flags={"model": {"latent_dim": 0, "stochastic_layers": 2}})
    with pytest.raises(VaekitError, match="--prior vamp needs a latent: give --latent-dim 1 or more"):
        resolve(preset="mlp", flags={"model": {"latent_dim": 0, "prior": "vamp"}})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nolatent")
    images, labels = blob_images(300, side=8)
    np.savez(root / "b.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(root / "b.npz"), binarize=True),
        model=NO_LATENT,
        train=TrainConfig(epochs=2, batch_size=32, lr=3e-3),
    )
    return train_run(config, root / "run", progress=False).run_dir


def test_it_trains_evaluates_and_skips_only_the_latent_pictures(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    splits = run.load_data()
    result = evaluate_run(run, splits, k=3, quality=False)
    assert (result["active_units"], result["latent_dim"]) == (0, 0) and collapse_warning(result) is None
    assert result["iwae_nll_nats"] == pytest.approx(result["elbo_nelbo_nats"], rel=1e-5)  # both exact
    ctx = PictureContext(run, splits)
    every = ["reconstructions", "samples", *LATENT_PICTURES]
    assert drawable(ctx, every) == ["reconstructions", "samples"]
    assert draw(ctx, "samples", tmp_path / "s.png").is_file()
    with pytest.raises(VaekitError, match="this model has none"):
        draw(ctx, "traversals", tmp_path / "t.png")


def test_there_is_no_latent_space_to_serve(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--run", str(run_dir), "--port", "0"]) == 2
    assert "no latent space to explore" in capsys.readouterr().err
