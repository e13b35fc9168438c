import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit import evaluate
from vaekit.config import DataConfig, ModelConfig
from vaekit.data.transforms import to_model_input
from vaekit.distributions import standard_normal_log_prob
from vaekit.evaluate import frechet_distance, iwae_over, iwae_per_image, latent_usage
from vaekit.models import build_model
from vaekit.objectives import iwae_bound, log_importance_weights

DATA = DataConfig()


def tiny_model(seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return build_model(ModelConfig(hidden_sizes=(32,), latent_dim=3), (1, 8, 8)).eval()


def blobs(n: int) -> np.ndarray:
    return blob_images(n, side=8)[0]


def test_iwae_bound_with_one_sample_is_the_log_weight() -> None:
    log_w = torch.randn(1, 5)
    assert torch.allclose(iwae_bound(log_w), log_w[0])
    # log-mean-exp: K equal weights give that weight back.
    assert torch.allclose(iwae_bound(torch.full((7, 2), -3.0)), torch.full((2,), -3.0))


def test_iwae_k1_equals_the_elbo_in_expectation() -> None:
    """Averaged over many draws, the K = 1 estimate is the ELBO with the closed-form KL."""
    model = tiny_model()
    x = to_model_input(torch.from_numpy(blobs(1)).expand(20000, 1, 8, 8), DATA)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        iwae_1 = iwae_per_image(model, x, k=1, generator=generator).mean().item()
        elbo = -model.elbo(x, generator=generator).nelbo_nats.mean().item()
    assert iwae_1 == pytest.approx(elbo, abs=0.05)


def test_iwae_k1_uses_sampled_weights_exactly() -> None:
    model = tiny_model()
    x = to_model_input(torch.from_numpy(blobs(4)), DATA)
    got = iwae_per_image(model, x, k=1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        posterior = model.encode(x)
        eps = torch.randn((1, 4, 3), generator=torch.Generator().manual_seed(3))
        z = posterior.mu + posterior.std * eps  # (1, B, Z)
        log_px = model.log_likelihood(x, model.decode(z[0]))
        by_hand = log_importance_weights(log_px, standard_normal_log_prob(z[0]), posterior.log_prob(z[0]))
    assert torch.allclose(got.float(), by_hand, atol=1e-4)


def test_iwae_tightens_as_k_grows() -> None:
    model = tiny_model()
    images = blobs(64)
    nll = [iwae_over(model, images, DATA, k=k, batch_size=32, seed=k).nll_nats for k in (1, 10, 100)]
    assert nll[0] > nll[1] > nll[2]


def test_chunking_bounds_memory_without_changing_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    images = blobs(16)
    whole = iwae_over(model, images, DATA, k=500, batch_size=16).nll_nats
    monkeypatch.setattr(evaluate, "MAX_DECODED_VALUES", 16 * 64 * 7)  # chunks of 7 samples
    assert evaluate._chunk_size(500, 16, 64) == 7
    chunked = iwae_over(model, images, DATA, k=500, batch_size=16).nll_nats
    assert chunked == pytest.approx(whole, abs=0.05)  # same estimator, different noise


def test_active_units_are_zero_when_the_decoder_ignores_z() -> None:
    """With a decoder that cannot see z, the KL term drives every posterior to the prior."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=(32,), latent_dim=4), (1, 8, 8))
    first = model.decoder.body[0]
    with torch.no_grad():
        first.weight.zero_()
    first.weight.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = to_model_input(torch.from_numpy(blobs(256)), DATA)
    for _ in range(300):
        optimizer.zero_grad()
        model.elbo(x).loss.mean().backward()
        optimizer.step()
    usage = latent_usage(model, blobs(256), DATA)
    assert usage.active_units == 0
    assert max(usage.kl_per_dim_nats) < 0.05


def test_active_units_count_informative_dimensions() -> None:
    model = tiny_model()
    with torch.no_grad():  # make mu_0 depend strongly on the input and the rest constant
        model.encoder.head.weight.zero_()
        model.encoder.head.bias.zero_()
        model.encoder.head.weight[0].normal_(0, 1)
    usage = latent_usage(model, blobs(200), DATA)
    assert usage.active_units == 1
    assert usage.order[0] == 0


def test_frechet_distance_against_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(200_000, 3))
    b = rng.normal([1.0, 0.0, 0.0], [1.0, 2.0, 0.5], size=(200_000, 3))
    # For diagonal covariances: |m_a - m_b|^2 + sum (s_a - s_b)^2.
    closed_form = 1.0 + (1 - 2.0) ** 2 + (1 - 0.5) ** 2
    assert frechet_distance(a, b) == pytest.approx(closed_form, abs=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_noise() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(5000, 8)) @ rng.normal(size=(8, 8))
    distances = [frechet_distance(features, features + rng.normal(0, s, features.shape)) for s in (0.0, 0.3, 1.0)]
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert distances[0] < distances[1] < distances[2]


def test_bits_per_dim_of_iwae() -> None:
    summary = iwae_over(tiny_model(), blobs(8), DATA, k=5)
    assert summary.bits_per_dim == pytest.approx(summary.nll_nats / (64 * math.log(2)))


def test_sample_quality_end_to_end(tmp_path: Path) -> None:
    from vaekit.data import DatasetSplits, ImageSet
    from vaekit.quality import _cache_path, sample_quality

    images, labels = blob_images(300, side=12)
    sets = [ImageSet(images[i::3], labels[i::3]) for i in range(3)]
    splits = DatasetSplits("blobs", "test", sets[0], sets[1], sets[2])
    model = build_model(ModelConfig(hidden_sizes=(16,), latent_dim=2), (1, 12, 12)).eval()
    scores = sample_quality(model, splits, DATA, samples=100)
    assert scores is not None
    assert scores.classifier_test_accuracy > 0.9  # quadrants are easy
    assert scores.frechet_distance > scores.frechet_distance_test_vs_train
    assert _cache_path(splits).is_file()  # trained once, then cached
    assert sample_quality(model, splits, DATA, samples=100) == scores


def test_iwae_standard_error_is_the_spread_between_images() -> None:
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


def test_each_kind_of_evaluation_has_its_own_file() -> None:
    from vaekit.assessment import evaluation_file

    assert evaluation_file({"split": "test", "first_images": None}) == "eval.json"  # the one the report reads
    assert evaluation_file({"split": "val", "first_images": None}) == "eval-val.json"
    assert evaluation_file({"split": "test", "first_images": 1000}) == "eval-first1000.json"
