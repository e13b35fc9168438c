"""Posterior families q(z|x): the diagonal Gaussian, inverse autoregressive flows and the von
Mises-Fisher on the sphere (`--posterior gaussian|iaf|vmf`). base.py holds the contract."""

from vaekit.posteriors.base import Posterior, PosteriorFamily
from vaekit.posteriors.gaussian import GaussianFamily
from vaekit.posteriors.hyperspherical import VmfFamily, VmfPosterior
from vaekit.posteriors.iaf import FlowPosterior, IafFamily, InverseAutoregressiveFlow

__all__ = [
    "FlowPosterior",
    "GaussianFamily",
    "IafFamily",
    "InverseAutoregressiveFlow",
    "Posterior",
    "PosteriorFamily",
    "VmfFamily",
    "VmfPosterior",
]
