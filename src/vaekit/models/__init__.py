"""Encoder/decoder architectures and the VAE that combines them."""

from vaekit.models.vae import VAE, build_model

__all__ = ["VAE", "build_model"]
