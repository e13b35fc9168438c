"""Convolutional encoder (strided convolutions) and its mirror-image decoder (transposed ones).

Works for any (C, H, W): each layer uses 'same' padding k // 2, so a stride-2 layer maps a side
n to ceil(n / 2), and the decoder's output_padding restores the exact size on the way back.
Shapes: B batch, (C, H, W) image, Z latent, (C_L, H_L, W_L) the last feature map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.errors import VaekitError
from vaekit.models.layers import activation


def feature_sizes(side: int, strides: tuple[int, ...], kernel: int) -> list[int]:
    """Side length before the first layer and after each layer."""
    pad = kernel // 2
    sides = [side]
    for stride in strides:
        if stride > 1 and sides[-1] < 2:
            raise VaekitError(
                f"image side {side} is too small for {sum(s > 1 for s in strides)} stride-2 conv layers: "
                "use a larger --image-size or fewer/stride-1 layers in --conv-strides"
            )
        sides.append((sides[-1] + 2 * pad - kernel) // stride + 1)
    return sides


def mirror_geometry(
    image_shape: tuple[int, int, int], channels: tuple[int, ...], strides: tuple[int, ...], kernel: int
) -> tuple[tuple[int, int, int], list[tuple[int, int]]]:
    """The last feature map's (C_L, H_L, W_L), and for each layer i the output_padding that makes
    its transposed convolution land exactly on layer i's input size.

    A transposed conv gives (n - 1) * s - 2p + k + output_padding; with odd kernels and same
    padding the needed padding is always 0 or 1, so every image size can be mirrored.
    """
    _, h, w = image_shape
    heights, widths = feature_sizes(h, strides, kernel), feature_sizes(w, strides, kernel)
    pad = kernel // 2

    def needed(sides: list[int], i: int) -> int:
        return sides[i] - ((sides[i + 1] - 1) * strides[i] - 2 * pad + kernel)

    paddings = [(needed(heights, i), needed(widths, i)) for i in range(len(strides))]
    return (channels[-1], heights[-1], widths[-1]), paddings


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> posterior parameters (B, W)."""

    prefers_channels_last = True  # oneDNN's convolutions are faster on NHWC tensors

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        kernel: int,
        outputs: int,
        act: str,
    ) -> None:
        super().__init__()
        c = image_shape[0]
        self.feature_shape, _ = mirror_geometry(image_shape, channels, strides, kernel)
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip((c, *channels[:-1]), channels, strides, strict=True):
            layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2), activation(act)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(math.prod(self.feature_shape), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(start_dim=1))  # (B, C_L, H_L, W_L) -> (B, F) -> (B, W)


class ConvDecoder(nn.Module):
    """z (B, Z) -> likelihood parameters (B, C, H, W); the encoder's layers in reverse."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        kernel: int,
        latent_dim: int,
        act: str,
    ) -> None:
        super().__init__()
        c = image_shape[0]
        self.feature_shape, paddings = mirror_geometry(image_shape, channels, strides, kernel)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.feature_shape)), activation(act))
        layers: list[nn.Module] = []
        outs = (c, *channels[:-1])  # layer i maps channels[i] back to outs[i]
        for i in reversed(range(len(channels))):
            layers.append(
                nn.ConvTranspose2d(
                    channels[i], outs[i], kernel, strides[i], padding=kernel // 2, output_padding=paddings[i]
                )
            )
            if i > 0:  # the last layer outputs logits / means: no activation
                layers.append(activation(act))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.project(z).unflatten(1, self.feature_shape)  # (B, Z) -> (B, C_L, H_L, W_L)
        return self.body(features)  # -> (B, C, H, W)
