"""A network factory of one's own, in a module of its own so that a saved run can build it again
(`vaekit evaluate --run R --trust-code` imports this module by name)."""

from torch import nn

from vaekit import NetworkSpec


def small_conv(spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """Encoder: x (B, C, 8, 8) -> (B, 2Z), mean then log-variance. Decoder: z (B, Z) -> (B, P, 8, 8),
    the likelihood's parameters (logits here) at every pixel."""
    channels, height, width = spec.input_shape
    encoder = nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),  # (B, 16, 8, 8)
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),  # (B, 32, 4, 4)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * (height // 2) * (width // 2), 2 * spec.latent_dim),
    )
    out_channels, out_height, out_width = spec.output_shape
    decoder = nn.Sequential(
        nn.Linear(spec.latent_dim, 32 * (out_height // 2) * (out_width // 2)),
        nn.ReLU(),
        nn.Unflatten(1, (32, out_height // 2, out_width // 2)),  # (B, 32, 4, 4)
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),  # (B, 16, 8, 8)
        nn.ReLU(),
        nn.Conv2d(16, out_channels, 3, padding=1),  # (B, P, 8, 8)
    )
    return encoder, decoder
