"""An offline sample-quality score: a Frechet distance in the feature space of a small
classifier trained on the dataset's own labels, plus that classifier's accuracy on
reconstructions.

This is *not* the Inception FID: Inception weights cannot be fetched offline, and an ImageNet
network says little about 28x28 grey images anyway. The numbers compare models on the same
dataset (same cached classifier), not with FIDs published elsewhere.

Shapes: N images, (C, H, W) image, F = 128 features, L classes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from vaekit.atomic import write_bytes
from vaekit.config import DataConfig
from vaekit.data import DatasetSplits
from vaekit.data.transforms import labelled_batches, to_unit_range
from vaekit.errors import VaekitError
from vaekit.models import VAE

FEATURES = 128
CLASSIFIER_EPOCHS = 3
MIN_CLASSIFIER_STEPS = 500  # small datasets: enough steps to learn, whatever their size
CLASSIFIER_BATCH = 128
MAX_CLASSIFIER_IMAGES = 60_000
CLASSIFIER_SEED = 0


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F):
    |m_a - m_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), which is symmetric PSD, so only symmetric eigensolvers are needed.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


class FeatureClassifier(nn.Module):
    """Two conv blocks and a 128-d feature layer; images in [0, 1], any (C, H, W)."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),  # (N, 64, 4, 4) -> (N, 1024)
            nn.Linear(64 * 16, FEATURES), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, C, H, W) -> (N, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # -> (N, L) logits


def _cache_path(splits: DatasetSplits) -> Path:
    images = splits.train.images
    labels = splits.train.labels
    assert labels is not None
    digest = hashlib.sha256()
    recipe = (CLASSIFIER_EPOCHS, MIN_CLASSIFIER_STEPS, CLASSIFIER_BATCH)
    for part in (images.shape, images[:: max(1, len(images) // 512)].tobytes(), labels.tobytes(), recipe):
        digest.update(str(part).encode() if not isinstance(part, bytes) else part)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    safe_name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(splits.name).name)
    return Path(base) / "vaekit" / "classifiers" / f"{safe_name}-{digest.hexdigest()[:16]}.safetensors"


def _as_unit(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(images).to(device)
    return tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor.float()


def train_classifier(splits: DatasetSplits, device: torch.device) -> FeatureClassifier:
    """Train (or load from the cache) the feature classifier for this dataset."""
    labels = splits.train.labels
    if labels is None:
        raise VaekitError(
            f"dataset {splits.name} has no labels: sample quality needs them to train its feature classifier "
            "(use sub-folders as classes, or a .npz with y, or pass --no-quality)"
        )
    classes = int(labels.max()) + 1
    model = FeatureClassifier(splits.shape[0], classes)
    path = _cache_path(splits)
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.to(device).eval()
    torch.manual_seed(CLASSIFIER_SEED)
    model = FeatureClassifier(splits.shape[0], classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # A classifier for features needs no more than a Fashion-MNIST-sized training set.
    images = torch.from_numpy(np.asarray(splits.train.images[:MAX_CLASSIFIER_IMAGES])).to(device)
    targets = torch.from_numpy(labels[:MAX_CLASSIFIER_IMAGES]).to(device)
    generator = torch.Generator().manual_seed(CLASSIFIER_SEED)
    steps_per_epoch = -(-len(images) // CLASSIFIER_BATCH)
    epochs = max(CLASSIFIER_EPOCHS, -(-MIN_CLASSIFIER_STEPS // steps_per_epoch))
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for start in range(0, len(images), CLASSIFIER_BATCH):
            index = order[start : start + CLASSIFIER_BATCH]
            loss = F.cross_entropy(model(images[index].float() / 255.0), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
    return model


@torch.inference_mode()
def features_of(classifier: FeatureClassifier, images: np.ndarray | torch.Tensor, batch: int = 1000) -> np.ndarray:
    device = next(classifier.parameters()).device
    out = [classifier.features(_as_unit(images[s : s + batch], device)).cpu() for s in range(0, len(images), batch)]
    return torch.cat(out).double().numpy()


@torch.inference_mode()
def predicted_classes(classifier: FeatureClassifier, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """The classifier's class for each image, (N,)."""
    device = next(classifier.parameters()).device
    return torch.cat(
        [classifier(_as_unit(images[s : s + 1000], device)).argmax(1).cpu() for s in range(0, len(images), 1000)]
    ).numpy()


def accuracy(classifier: FeatureClassifier, images: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    return float((predicted_classes(classifier, images) == labels).mean())


def agreement_per_class(predicted: np.ndarray, asked: np.ndarray, classes: int) -> tuple[float, ...]:
    """For each class k, the share of the images asked to be k that the classifier calls k (nan
    where none was asked)."""
    return tuple(
        float((predicted[asked == k] == k).mean()) if (asked == k).any() else float("nan") for k in range(classes)
    )


@dataclass(frozen=True)
class QualityScores:
    frechet_distance: float  # prior samples vs test images, in classifier feature space
    frechet_distance_test_vs_train: float  # the same distance between two real sets: the floor
    recon_accuracy: float  # classifier accuracy on reconstructions of the test images
    classifier_test_accuracy: float  # its accuracy on the real test images: the ceiling
    samples: int
    # Conditional models only: the share of samples drawn for label k that the classifier calls k
    # (overall, and per class); to read beside classifier_test_accuracy.
    label_agreement: float | None = None
    label_agreement_per_class: tuple[float, ...] | None = None
    classifier_test_accuracy_per_class: tuple[float, ...] | None = None  # the per-class ceilings

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.inference_mode()
def sample_quality(
    model: VAE, splits: DatasetSplits, data: DataConfig, samples: int = 10_000, seed: int = 0
) -> QualityScores | None:
    """Scores for `model`, or None when the dataset has no labels to train the classifier on."""
    if splits.train.labels is None or splits.test.labels is None:
        return None
    device = model.device
    with torch.inference_mode(False):
        classifier = train_classifier(splits, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    test = splits.test.images[:samples]
    test_labels = splits.test.labels[: len(test)]
    # A conditional model draws each sample for a test image's label, so the samples' classes
    # are spread as the test set's are and the Frechet distance compares like with like.
    asked = model.conditioning(test_labels, "the test set")
    drawn = []
    for start in range(0, min(samples, len(test)), 1000):
        n = min(1000, len(test) - start)
        y = None if asked is None else torch.from_numpy(asked[start : start + n]).to(device)
        drawn.append(to_unit_range(model.sample(n, generator, y=y), data).cpu())
    prior_samples = torch.cat(drawn)  # (N, C, H, W) in [0, 1]
    batches = labelled_batches(test, asked, data, 1000, device, generator)
    recon = [to_unit_range(model.reconstruct(x, y), data).cpu() for x, y in batches]
    test_features = features_of(classifier, test)
    agreement: dict[str, Any] = {}
    if asked is not None:
        predicted = predicted_classes(classifier, prior_samples)
        agreement = {
            "label_agreement": float((predicted == asked).mean()),
            "label_agreement_per_class": agreement_per_class(predicted, asked, model.classes),
            "classifier_test_accuracy_per_class": agreement_per_class(
                predicted_classes(classifier, test), test_labels, model.classes
            ),
        }
    return QualityScores(
        frechet_distance=frechet_distance(features_of(classifier, prior_samples), test_features),
        frechet_distance_test_vs_train=frechet_distance(
            features_of(classifier, splits.train.images[: len(test)]), test_features
        ),
        recon_accuracy=accuracy(classifier, torch.cat(recon), test_labels),
        classifier_test_accuracy=accuracy(classifier, test, test_labels),
        samples=len(test),
        **agreement,
    )
