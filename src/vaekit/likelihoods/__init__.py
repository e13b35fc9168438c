"""Likelihoods p(x|z), one module each with its spec (vaekit/methods.py): the decoder outputs a
likelihood's parameters, and the likelihood turns them into log p(x|z), a mean and a draw.

`--likelihood NAME` chooses one, with its own settings (`--sigma`, `--gaussian-variance`, ...);
a package installed beside vaekit adds its own through the entry-point group `vaekit.likelihoods`.
"""

from vaekit.likelihoods.base import Likelihood, LikelihoodContext, Support

__all__ = ["Likelihood", "LikelihoodContext", "Support"]
