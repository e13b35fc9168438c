"""What `vaekit serve` does with the model, without HTTP: decode a latent vector, encode a test
image, sample, interpolate, and the map of the test set's latent means. Every request value is
checked here and a bad one raises RequestError with the message the client sees.

Shapes: Z latent, (C, H, W) image, T interpolation steps.

A conditional run decodes under a label the page picks (`label`, a class index): decode, sample
and interpolate take one; encoding a test image uses its own label.
"""

from __future__ import annotations

import base64
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaekit.data import DatasetSplits
from vaekit.latent import latent_plane, lerp, slerp
from vaekit.loading import TrainedRun
from vaekit.metrics.latents import latent_means, latent_usage
from vaekit.metrics.meaning import figure_description
from vaekit.viz.grid import feature_bars, make_grid, png_bytes

MAX_ABS_Z = 50.0  # 50 prior standard deviations: anything beyond is a client bug, not a latent
MAX_SAMPLES = 64
MAX_STEPS = 16
MAP_POINTS = 2000  # test images on the map (enough to see the structure, light to send)
DISPLAY_SCALE = 4  # images are sent enlarged (nearest neighbour) so browsers need no smoothing


class RequestError(ValueError):
    """A request the explorer refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in [low, high], given as an int or a decimal string (query parameters)."""
    if isinstance(value, bool):
        raise RequestError(f"{name} must be an integer from {low} to {high}")
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.lstrip("-").isdigit() else None
    if not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class LatentMap:
    """The test set's latent means in their plane (vaekit.latent.latent_plane)."""

    points: np.ndarray  # (N, 2) coordinates, in standard deviations along each axis
    labels: list[int] | None
    mean: torch.Tensor  # (Z,)
    axes: torch.Tensor  # (2, Z) unit directions
    scales: torch.Tensor  # (2,) standard deviation along each

    def to_json(self) -> dict[str, Any]:
        return {
            "points": np.round(self.points, 3).tolist(),
            "labels": self.labels,
            "mean": self.mean.tolist(),
            "axes": self.axes.tolist(),
            "scales": self.scales.tolist(),
        }


class LatentExplorer:
    def __init__(self, run: TrainedRun, splits: DatasetSplits, seed: int = 0) -> None:
        self.run = run
        self.model = run.model.eval()
        self.test_images = splits.test.array  # uint8 (N, C, H, W); at most 10,000 images
        # a conditional model's labels of the test images (it encodes each under its own); else None
        self.test_labels = self.model.conditioning(splits.test.labels, "the test set")
        self.lock = threading.Lock()  # one model call at a time: torch already uses every core
        self.generator = torch.Generator(self.model.device).manual_seed(seed)
        shown = self.test_images[:MAP_POINTS]
        usage = latent_usage(self.model, shown, run.config.data, labels=self._labels_of(slice(0, len(shown))))
        self.kl_per_dim = usage.kl_per_dim_nats
        self.order = usage.order  # most informative dimension first
        self.map = self._latent_map(shown, splits.test.labels)
        self.class_names = list(splits.class_names) if splits.class_names else None

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def _labels_of(self, items: slice | list[int]) -> np.ndarray | None:
        return None if self.test_labels is None else self.test_labels[items]

    def _latent_map(self, images: np.ndarray, labels: np.ndarray | None) -> LatentMap:
        means = self._encode_means(images, self._labels_of(slice(0, len(images))))  # (N, Z)
        plane = latent_plane(means)
        points = plane.project(means) / plane.scales  # (N, 2), in standard deviations along each axis
        shown_labels = None if labels is None else [int(v) for v in labels[: len(images)]]
        return LatentMap(points.numpy(), shown_labels, plane.centre, plane.axes, plane.scales)

    def _encode_means(self, images: np.ndarray, labels: np.ndarray | None) -> torch.Tensor:
        with self.lock:
            means = latent_means(self.model, images, self.run.config.data, labels=labels)
            return torch.from_numpy(means).float()  # (N, Z)

    def _image_data(self, x: torch.Tensor) -> str:
        """Model-scale images (N, C, H, W) -> one data URI (a row of N images); a table's rows
        (N, 1, 1, D) are drawn as bars of their standardised features."""
        shown = feature_bars(x) if self.run.is_table else self.run.to_display(x).clamp(0.0, 1.0)
        picture = make_grid(shown, columns=len(x), padding=0 if len(x) == 1 else 2)
        return "data:image/png;base64," + base64.b64encode(png_bytes(picture, DISPLAY_SCALE)).decode("ascii")

    @torch.inference_mode()
    def _decode(self, z: torch.Tensor, label: int | None) -> torch.Tensor:
        """E[x|z] for codes (N, Z), under `label` for a conditional model."""
        y = None if label is None else torch.full((len(z),), label, device=self.model.device)
        with self.lock:
            return self.model.mean_image(self.model.decode(z.to(self.model.device), y))

    def check_label(self, label: Any) -> int | None:
        """The class to decode under: required by a conditional model, refused by another."""
        if not self.model.classes:
            if label is not None:
                raise RequestError("this run is not conditional: it takes no label")
            return None
        if label is None:
            raise RequestError(f"this run is conditional: give a label from 0 to {self.model.classes - 1}")
        return _integer(label, "label", 0, self.model.classes - 1)

    def check_z(self, z: Any) -> torch.Tensor:
        if not isinstance(z, list) or len(z) != self.latent_dim:
            got = f"{len(z)} values" if isinstance(z, list) else type(z).__name__
            raise RequestError(f"z must be a list of {self.latent_dim} numbers, got {got}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in z):
            raise RequestError("z must hold numbers only")
        if not all(math.isfinite(v) for v in z):
            raise RequestError("z must hold finite numbers (no NaN or infinity)")
        if any(abs(v) > MAX_ABS_Z for v in z):
            raise RequestError(f"z values must lie within ±{MAX_ABS_Z:g} (the prior is N(0, 1) per dimension)")
        return torch.tensor(z, dtype=torch.float32)

    def info(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "order": self.order,
            "kl_per_dim_nats": self.kl_per_dim,
            "image_shape": list(self.model.image_shape),
            "test_images": len(self.test_images),
            "max_abs_z": MAX_ABS_Z,
            "max_samples": MAX_SAMPLES,
            "map": self.map.to_json(),
            "class_names": self.class_names,
            # a conditional run's classes to decode under (the page shows a picker); None otherwise
            "classes": list(self.run.class_names) if self.model.classes else None,
            "run": str(self.run.path),
            "figure": figure_description(self.model.likelihood, self.run.config.data, bool(self.model.classes)),
        }

    def decode(self, z: Any, label: Any = None) -> dict[str, Any]:
        x = self._decode(self.check_z(z)[None], self.check_label(label))
        if self.run.is_table:  # the row itself too, in the table's own units
            row = self.run.schema.decode(self.run.to_rows(x))
            values = {name: cells.tolist()[0] for name, cells in row.items()}  # plain Python values, for JSON
            return {"image": self._image_data(x), "values": values}
        return {"image": self._image_data(x)}

    def encode(self, index: Any) -> dict[str, Any]:
        i = _integer(index, "index", 0, len(self.test_images) - 1)
        mean = self._encode_means(self.test_images[i : i + 1], self._labels_of(slice(i, i + 1)))[0]
        original = self.run.prepare(self.test_images[i : i + 1])
        label = self._labels_of(slice(i, i + 1))
        return {
            "index": i,
            "z": mean.tolist(),
            "image": self._image_data(original),
            "label": None if label is None else int(label[0]),
        }

    def sample(self, n: Any, label: Any = None) -> dict[str, Any]:
        count = _integer(n, "n", 1, MAX_SAMPLES)
        chosen = self.check_label(label)
        with self.lock:
            if not self.model.can_sample:
                raise RequestError(self.model.cannot_sample_because)
            z = self.model.prior_latents(count, self.generator)  # (n, Z)
        return {"z": z.cpu().tolist(), "images": [self._image_data(image[None]) for image in self._decode(z, chosen)]}

    def interpolate(
        self, a: Any, b: Any, steps: Any = 10, spherical: bool = False, label: Any = None
    ) -> dict[str, Any]:
        last = len(self.test_images) - 1
        first, second = _integer(a, "a", 0, last), _integer(b, "b", 0, last)
        count = _integer(steps, "steps", 2, MAX_STEPS)
        chosen = self.check_label(label)
        ends = self._encode_means(self.test_images[[first, second]], self._labels_of([first, second]))
        path = (slerp if spherical else lerp)(ends[0], ends[1], count)  # (T, Z)
        return {"image": self._image_data(self._decode(path, chosen)), "steps": count}
