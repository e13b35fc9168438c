"""A learned prior over a VQ-VAE's code maps: p(c) = prod_i p(c_i | c_<i) in raster order, each
factor a softmax over the K codes from a PixelCNN over the map (van den Oord et al. 2016; the
VQ-VAE paper trains one after the autoencoder, section 4.1). Its masked convolutions are the
pixel-context head's (models/pixelcontext.py): the first hides each position from itself, the
rest may look at it, so position i's logits depend on codes strictly before i.

Every factor is normalised over the K codes, so p sums to 1 over all K^(h w) maps: -log p(c) is a
code length in nats, and the VQ-VAE's -log p(x|c) - log p(c) an honest bound on -log p(x).

Shapes: B maps, (h, w) a map (1 x M for an MLP's M code vectors), K codes, E embedding channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.models.pixelcontext import MaskedConv2d

FIRST_KERNEL = 7  # the first layer sees 3 rows above and 3 positions either side before the centre


class CodePrior(nn.Module):
    """An autoregressive model of (h, w) maps of codes in 0..K-1."""

    trained_steps: torch.Tensor  # () optimiser steps it has had: 0 until `vaekit train-prior`

    def __init__(self, size: int, map_shape: tuple[int, int], channels: int, layers: int) -> None:
        super().__init__()
        self.size, self.map_shape = size, map_shape
        self.embed = nn.Embedding(size, channels)
        self.first = MaskedConv2d(channels, channels, FIRST_KERNEL, include_centre=False)
        self.hidden = nn.ModuleList(MaskedConv2d(channels, channels, 3, include_centre=True) for _ in range(layers - 1))
        self.out = nn.Conv2d(channels, size, 1)
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.int64))

    @property
    def trained(self) -> bool:
        return int(self.trained_steps) > 0

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) codes -> (B, K, h, w): position i's logits from the codes before it."""
        h = self.first(self.embed(codes).permute(0, 3, 1, 2))  # (B, E, h, w)
        for layer in self.hidden:
            h = h + F.relu(layer(F.relu(h)))  # residual refinement
        return self.out(F.relu(h))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(c) in nats, (B, h, w) or (B, h w) codes -> (B,)."""
        codes = codes.view(len(codes), *self.map_shape)
        log_p = F.log_softmax(self.logits(codes).float(), dim=1)  # (B, K, h, w)
        return log_p.gather(1, codes.unsqueeze(1)).flatten(1).sum(-1)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """n maps drawn position by position in raster order, (n, h, w)."""
        height, width = self.map_shape
        codes = torch.zeros(n, height, width, dtype=torch.int64, device=device or self.out.weight.device)
        for i in range(height):
            for j in range(width):
                probs = F.softmax(self.logits(codes)[:, :, i, j].float(), dim=1)  # (n, K)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return codes
