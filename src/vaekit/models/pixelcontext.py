"""A small autoregressive head on the decoder: each pixel's likelihood parameters also depend on
the pixels before it in raster order (PixelVAE, Gulrajani et al. 2017,
https://arxiv.org/abs/1611.05013; the lossy-autoencoder view of Chen et al. 2017,
https://arxiv.org/abs/1611.02731).

A mean-field decoder must explain every pixel from z alone, so local texture it cannot predict
costs nats on every image. A few masked convolutions over the image itself model those local
correlations and leave the global content to z. Their receptive field is kept small (a few rows
above, a few pixels to the left) so z still carries the image's content.

Shapes: B batch, (C, H, W) image, P likelihood parameters per pixel (C times the likelihood's
per-channel count), F extra feature channels the decoder emits for the head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vaekit.models.layers import activation

FIRST_KERNEL = 5  # the first masked layer sees 2 rows above and 2 pixels to the left
# Extra z-dependent feature maps the decoder emits for the head besides the likelihood's
# parameters: cheap (one more output channel each) and richer than the parameters alone.
CONTEXT_FEATURES = 8


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution that sees only positions before the centre in raster order, and
    the centre itself when `include_centre` (PixelCNN's masks B and A, van den Oord et al. 2016).

    Only the first layer sees the image and it hides the whole centre pixel (every channel), so a
    stack of one exclusive layer and any number of inclusive ones makes output (i, j) depend on
    pixels strictly before (i, j); channels of one pixel are independent given the ones before it.
    """

    mask: torch.Tensor  # (kernel, kernel), 1 where the kernel may look

    def __init__(self, in_channels: int, out_channels: int, kernel: int, include_centre: bool) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        centre = kernel // 2
        mask = torch.ones(kernel, kernel)
        mask[centre, centre + int(include_centre) :] = 0.0  # the centre row from the centre (or after it) on
        mask[centre + 1 :] = 0.0  # every row below the centre
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class PixelContextHead(nn.Module):
    """(image x, decoder output) -> likelihood parameters, the parameters of pixel i a function of
    z (through the decoder output) and of x's pixels before i.

    decoded is (B, P + F, H, W): P base parameters and F feature maps. The head adds a learned
    correction to the base parameters; it starts at zero, so a new model is the plain decoder.
    """

    def __init__(self, image_channels: int, param_channels: int, width: int, layers: int, act: str) -> None:
        super().__init__()
        self.param_channels = param_channels
        self.layers = layers
        self.first = MaskedConv2d(image_channels, width, FIRST_KERNEL, include_centre=False)
        self.condition = nn.Conv2d(param_channels + CONTEXT_FEATURES, width, 1)  # 1x1: no look below
        self.hidden = nn.ModuleList(MaskedConv2d(width, width, 3, include_centre=True) for _ in range(layers - 1))
        self.act = activation(act)
        self.out = nn.Conv2d(width, param_channels, 1)
        with torch.no_grad():
            for parameter in self.out.parameters():
                parameter.zero_()

    @property
    def reach(self) -> int:
        """How far pixel (i, j)'s parameters look: rows i - reach .. i, columns j - reach .. j + reach
        (the first layer's 2 rows up and 2 columns either side, one more for each later layer)."""
        return FIRST_KERNEL // 2 + self.layers - 1

    def forward(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), (K * B, P + F, H, W) -> (K * B, P, H, W): decoded may hold K decodings
        of each image (importance samples, sample-major); the layer that sees x runs once per image."""
        batch = x.shape[0]
        seen = self.first(x.contiguous(memory_format=torch.channels_last))  # (B, width, H, W)
        # oneDNN runs these small convolutions markedly faster on NHWC tensors, whatever the decoder emits.
        conditioned = self.condition(decoded.contiguous(memory_format=torch.channels_last))  # (K * B, width, H, W)
        h = self.act((conditioned.unflatten(0, (-1, batch)) + seen).flatten(0, 1))  # (K * B, width, H, W)
        for layer in self.hidden:
            h = h + self.act(layer(h))  # residual: each layer refines, none must relearn the rest
        return decoded[:, : self.param_channels] + self.out(h)

    @torch.no_grad()
    def generate(self, decoded: torch.Tensor, pixel_value: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """An image pixel by pixel in raster order, each pixel `pixel_value` of its parameters
        given the pixels chosen before it (the likelihood's mean: a deterministic picture).

        Each step runs the head on the window of rows i - reach .. i and columns j - reach ..
        j + reach, not the whole image. Exact: a layer's outputs are wrong only within one kernel
        radius of a cut window edge, each later layer moves that wrong margin one step inwards,
        and after all layers it stops short of (i, j). (B, P + F, H, W) -> (B, C, H, W).
        """
        batch, _, height, width = decoded.shape
        reach = self.reach
        image = torch.zeros(batch, self.first.in_channels, height, width, device=decoded.device, dtype=decoded.dtype)
        for i in range(height):
            top = max(0, i - reach)
            for j in range(width):
                left, right = max(0, j - reach), min(width, j + reach + 1)
                window = (slice(None), slice(None), slice(top, i + 1), slice(left, right))
                params = self.forward(image[window], decoded[window])[
                    :, :, -1:, j - left : j - left + 1
                ]  # (B, P, 1, 1)
                image[:, :, i, j] = pixel_value(params.float())[:, :, 0, 0]
        return image
