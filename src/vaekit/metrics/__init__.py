"""Numbers about a trained model: the dataset ELBO (elbo.py), the importance-weighted estimate of
log p(x) (likelihood.py), how the latent space is used (latents.py), an offline sample-quality
score (sample_quality.py), and everything `vaekit evaluate` reports (evaluation.py).

Imports models, data and loading; never training/.
"""

from vaekit.metrics.elbo import ElboSummary, elbo_over
from vaekit.metrics.latents import LatentUsage, latent_means, latent_usage
from vaekit.metrics.likelihood import IwaeSummary, iwae_over, iwae_per_image

__all__ = [
    "ElboSummary",
    "IwaeSummary",
    "LatentUsage",
    "elbo_over",
    "iwae_over",
    "iwae_per_image",
    "latent_means",
    "latent_usage",
]
