"""Paths and grids through latent space, as pure functions of tensors.

Shapes: Z latent, T steps along a path, N points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def lerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Straight line from z0 to z1 (each (Z,)), endpoints included: (T, Z)."""
    t = torch.linspace(0.0, 1.0, steps, dtype=z0.dtype, device=z0.device)[:, None]  # (T, 1)
    return (1.0 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models): follows the
    great circle between z0 and z1 and interpolates their norms, so intermediate points keep a
    typical norm under N(0, I) instead of shrinking towards the origin. (T, Z)."""
    t = torch.linspace(0.0, 1.0, steps, dtype=z0.dtype, device=z0.device)[:, None]
    n0, n1 = z0.norm(), z1.norm()
    cos_omega = torch.dot(z0 / n0, z1 / n1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos_omega)
    if omega.abs() < 1e-6:  # (anti)parallel enough that the great circle is undefined
        return lerp(z0, z1, steps)
    direction = (torch.sin((1.0 - t) * omega) * (z0 / n0) + torch.sin(t * omega) * (z1 / n1)) / torch.sin(omega)
    return direction * ((1.0 - t) * n0 + t * n1)


def traversal(base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """For each dim in `dims`, `base` (Z,) with that coordinate set to each of `values` (T,):
    (len(dims) * T, Z), one row of T codes per dimension."""
    rows = base.repeat(len(dims), len(values), 1)  # (D, T, Z)
    for row, dim in enumerate(dims):
        rows[row, :, dim] = values
    return rows.flatten(0, 1)


def principal_axes(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean (Z,), top-k unit directions (k, Z) and their standard deviations (k,) of (N, Z)."""
    mean = points.mean(0)
    centred = points - mean
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    std = singular[:k] / math.sqrt(max(1, len(points) - 1))
    return mean, directions[:k], std


def manifold_codes(mean: torch.Tensor, axes: torch.Tensor, scales: torch.Tensor, side: int) -> torch.Tensor:
    """A side x side grid of codes mean + a * scale_0 * axis_0 + b * scale_1 * axis_1, with a and
    b at the normal quantiles of an even grid in (0, 1) (as in Kingma & Welling's manifold
    figure): (side * side, Z), row-major with b decreasing down the rows."""
    probabilities = (torch.arange(side, dtype=mean.dtype) + 0.5) / side
    quantiles = torch.special.ndtri(probabilities).to(mean.device)  # (side,)
    a = quantiles.repeat(side)  # columns
    b = quantiles.flip(0).repeat_interleave(side)  # rows, top = largest
    return mean + a[:, None] * scales[0] * axes[0] + b[:, None] * scales[1] * axes[1]


@dataclass(frozen=True)
class LatentPlane:
    """A plane through latent space: its centre (Z,), two unit directions (2, Z) and the spread of
    the points along each (2,)."""

    centre: torch.Tensor
    axes: torch.Tensor
    scales: torch.Tensor

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Coordinates of points (N, Z) along the two directions, in latent units: (N, 2)."""
        return (points - self.centre) @ self.axes.T


def latent_plane(means: torch.Tensor) -> LatentPlane:
    """The plane of the latent map and the manifold picture for latent means (N, Z): the latent
    itself when Z = 2, a line (second direction zero) when Z = 1, else the top two principal
    directions of the means."""
    z = means.shape[1]
    if z == 2:
        return LatentPlane(torch.zeros(2, dtype=means.dtype), torch.eye(2, dtype=means.dtype), torch.ones(2))
    centre, axes, scales = principal_axes(means, min(2, z))
    if z == 1:
        axes = torch.cat([axes, torch.zeros_like(axes)])  # (2, 1)
        scales = torch.cat([scales, torch.ones_like(scales)])
    # A direction along which every point agrees would divide by zero in standardised coordinates.
    return LatentPlane(centre, axes, scales.clamp(min=1e-6))
