"""Residual convolutional encoder and decoder (He et al. 2016, pre-activation blocks:
https://arxiv.org/abs/1603.05027), with GroupNorm, which, unlike BatchNorm, behaves the same in
training and evaluation and does not couple the images of a batch.

Stages follow the conv family's layout (channels and stride per stage, same padding), each stage
a strided convolution followed by `blocks` residual blocks; the decoder mirrors it. Works for
any (C, H, W) the conv family handles. Shapes: B batch, (C, H, W) image, Z latent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.models.conv import mirror_geometry
from vaekit.models.layers import activation


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    """x + f(x) with f = norm-act-conv-norm-act-conv; shape-preserving, (B, c, h, w)."""

    def __init__(self, channels: int, kernel: int, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels),
            activation(act),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
            group_norm(channels),
            activation(act),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetEncoder(nn.Module):
    """x (B, C, H, W) -> posterior parameters (B, W)."""

    prefers_channels_last = True  # oneDNN's convolutions are faster on NHWC tensors

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        kernel: int,
        blocks: int,
        outputs: int,
        act: str,
    ) -> None:
        super().__init__()
        c = image_shape[0]
        self.feature_shape, _ = mirror_geometry(image_shape, channels, strides, kernel)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip((c, *channels[:-1]), channels, strides, strict=True):
            layers.append(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2))
            layers += [ResidualBlock(c_out, kernel, act) for _ in range(blocks)]
        layers += [group_norm(channels[-1]), activation(act)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(math.prod(self.feature_shape), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(start_dim=1))  # (B, C_L, H_L, W_L) -> (B, F) -> (B, W)


class ResNetDecoder(nn.Module):
    """z (B, Z) -> likelihood parameters (B, C, H, W); the encoder's stages in reverse."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        kernel: int,
        blocks: int,
        latent_dim: int,
        act: str,
    ) -> None:
        super().__init__()
        c = image_shape[0]
        self.feature_shape, paddings = mirror_geometry(image_shape, channels, strides, kernel)
        self.project = nn.Linear(latent_dim, math.prod(self.feature_shape))
        pad = kernel // 2
        layers: list[nn.Module] = []
        outs = (channels[0], *channels[:-1])  # stage i maps channels[i] back to outs[i]
        for i in reversed(range(len(channels))):
            layers += [ResidualBlock(channels[i], kernel, act) for _ in range(blocks)]
            layers += [
                group_norm(channels[i]),
                activation(act),
                nn.ConvTranspose2d(channels[i], outs[i], kernel, strides[i], padding=pad, output_padding=paddings[i]),
            ]
        # The last layer outputs logits / means for C channels: no norm or activation after it.
        layers += [group_norm(outs[0]), activation(act), nn.Conv2d(outs[0], c, kernel, padding=pad)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.project(z).unflatten(1, self.feature_shape)  # (B, Z) -> (B, C_L, H_L, W_L)
        return self.body(features)  # -> (B, C, H, W)
