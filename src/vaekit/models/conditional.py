"""A class label as a second input to the encoder and the decoder: the conditional VAE (Sohn et al.
2015, "Learning Structured Output Representation using Deep Conditional Generative Models"),
q(z|x, y) and p(x|z, y) with the prior p(z) = N(0, I) unchanged.

The label says which class; z is left to hold the rest (pose, stroke, style), so one z decoded
under each label draws the same style in every class. The encoder sees the label where it sees
the image: an MLP as K more inputs beside the flattened image, a convolutional encoder as K
constant one-hot planes beside the image's channels (a convolution can then mix the label into
every location); the decoder sees it as K more inputs beside z.

Shapes: B batch, (C, H, W) image, D = C*H*W, Z latent, K classes; y is int64 (B,) class indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot(y: torch.Tensor, classes: int, like: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) -> one-hot rows (B, K) with the dtype and device of `like`."""
    return F.one_hot(y.long(), classes).to(device=like.device, dtype=like.dtype)


def encoder_input_shape(image_shape: tuple[int, int, int], classes: int, flat: bool) -> tuple[int, int, int]:
    """The input shape a labelled encoder's inner network is built for: (1, 1, D + K) when it
    flattens its input anyway (an MLP), else (C + K, H, W)."""
    c, h, w = image_shape
    return (1, 1, c * h * w + classes) if flat else (c + classes, h, w)


class LabelledEncoder(nn.Module):
    """(x (B, C, H, W), y (B,)) -> the inner encoder's output for x with the label attached."""

    def __init__(self, inner: nn.Module, classes: int, flat: bool) -> None:
        super().__init__()
        self.inner = inner
        self.classes = classes
        self.flat = flat
        self.prefers_channels_last = bool(getattr(inner, "prefers_channels_last", False))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = one_hot(y, self.classes, x)  # (B, K)
        if self.flat:
            joined = torch.cat([x.flatten(1), code], dim=1)[:, None, None, :]  # (B, 1, 1, D + K)
        else:
            planes = code[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, K, H, W)
            joined = torch.cat([x, planes], dim=1)  # (B, C + K, H, W)
            if self.prefers_channels_last:
                joined = joined.contiguous(memory_format=torch.channels_last)
        return self.inner(joined)


class LabelledDecoder(nn.Module):
    """(z (B, Z), y (B,)) -> the inner decoder's output for [z, one-hot(y)] (B, Z + K)."""

    def __init__(self, inner: nn.Module, classes: int) -> None:
        super().__init__()
        self.inner = inner
        self.classes = classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.cat([z, one_hot(y, self.classes, z)], dim=-1))  # (B, Z + K) -> (B, P, H, W)
