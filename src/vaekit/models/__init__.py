"""Encoder/decoder architectures and the VAE that combines them."""

from vaekit.models.build import build_model, build_run_model
from vaekit.models.vae import VAE

__all__ = ["VAE", "build_model", "build_run_model"]
