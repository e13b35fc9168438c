"""The offline sample-quality score: the Frechet distance and the feature classifier
(metrics/sample_quality.py), and where evaluations are saved (metrics/evaluation.py)."""

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig
from vaekit.data import DatasetSplits, ImageSet
from vaekit.metrics.evaluation import evaluation_file
from vaekit.metrics.sample_quality import _cache_path, frechet_distance, sample_quality
from vaekit.models import build_model

DATA = DataConfig()


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


def test_sample_quality_end_to_end(tmp_path: Path) -> None:
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


def test_each_kind_of_evaluation_has_its_own_file() -> None:
    assert evaluation_file({"split": "test", "first_images": None}) == "eval.json"  # the one the report reads
    assert evaluation_file({"split": "val", "first_images": None}) == "eval-val.json"
    assert evaluation_file({"split": "test", "first_images": 1000}) == "eval-first1000.json"
