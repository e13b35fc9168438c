"""Network factories as a user would write them, for tests/test_custom_networks.py (imported by
name, `tests.user_networks:small_conv`, the way a run stores them)."""

from __future__ import annotations

from torch import nn

from vaekit.models.custom import NetworkSpec


def small_conv(spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """A stride-2 conv encoder and a transposed-conv decoder for 16x16 single-channel images."""
    channels, height, width = spec.input_shape
    encoder = nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1),  # (B, 8, H/2, W/2)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * (height // 2) * (width // 2), 2 * spec.latent_dim),
    )
    out_channels, out_h, out_w = spec.output_shape
    decoder = nn.Sequential(
        nn.Linear(spec.latent_dim, 8 * (out_h // 2) * (out_w // 2)),
        nn.ReLU(),
        nn.Unflatten(1, (8, out_h // 2, out_w // 2)),
        nn.ConvTranspose2d(8, out_channels, 4, stride=2, padding=1),  # (B, P, H, W)
    )
    return encoder, decoder


def wrong_encoder(spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """Forgets the log-variance: emits Z numbers instead of 2Z."""
    encoder = nn.Sequential(nn.Flatten(), nn.LazyLinear(spec.latent_dim))
    decoder = nn.Sequential(nn.Linear(spec.latent_dim, 1), nn.Unflatten(1, (1, 1, 1)))
    return encoder, decoder


def not_modules(spec: NetworkSpec) -> str:
    return "an encoder"
