"""Fully connected encoder and decoder (the 784-400-20 VAE of Kingma & Welling 2014 by default).

Shapes: B batch, (C, H, W) image, D = C*H*W, Z latent.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from vaekit.models.layers import activation


def _stack(sizes: list[int], act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), activation(act)]
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, C, H, W) -> posterior parameters (B, W): `outputs` numbers per image, as the posterior
    family reads them (W = 2Z for a Gaussian: [mu, logvar])."""

    def __init__(
        self, image_shape: tuple[int, int, int], hidden_sizes: tuple[int, ...], outputs: int, act: str
    ) -> None:
        super().__init__()
        self.body = _stack([math.prod(image_shape), *hidden_sizes], act)
        # One fused head for all the posterior's parameters: a single matmul.
        self.head = nn.Linear(hidden_sizes[-1] if hidden_sizes else math.prod(image_shape), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(start_dim=1)))  # (B, C, H, W) -> (B, D) -> (B, W)


class MLPDecoder(nn.Module):
    """z (B, Z) -> likelihood parameters (B, C, H, W) (logits for Bernoulli, mean for Gaussian)."""

    def __init__(
        self, image_shape: tuple[int, int, int], hidden_sizes: tuple[int, ...], latent_dim: int, act: str
    ) -> None:
        super().__init__()
        self.image_shape = image_shape
        widths = [latent_dim, *reversed(hidden_sizes)]
        self.body = _stack(widths, act)
        self.head = nn.Linear(widths[-1], math.prod(image_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z)).unflatten(1, self.image_shape)  # (B, D) -> (B, C, H, W)
