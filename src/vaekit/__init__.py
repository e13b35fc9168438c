"""vaekit: Variational Autoencoders with correct math, from Python or one command.

import vaekit
run = vaekit.fit(images, labels, epochs=20)          # arrays, tensors, Datasets; or vectors (N, D)
z = run.model.encode(run.prepare(images)).mode()     # posterior means
run = vaekit.load_run("runs/mlp")                    # any run folder, from the CLI or from fit

What a library user needs is here: `fit` and `resume`, the callbacks they receive, the
likelihoods and priors, `load_run`, the metrics (negative ELBO, IWAE, latent usage), and the
contracts of their own networks (`NetworkSpec`, `Encoder`, `Decoder`). Names are imported on
first use (PEP 562), so `import vaekit` is cheap and code that only loads runs (metrics,
pictures, the web app) never imports the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# exported name -> the module that defines it
_EXPORTS = {
    "fit": "vaekit.training.api",
    "resume": "vaekit.training.api",
    "Callback": "vaekit.training.callbacks",
    "EpochReport": "vaekit.training.callbacks",
    "EarlyStopping": "vaekit.training.callbacks",
    "train_run": "vaekit.training.run",
    "TrainedRun": "vaekit.loading",
    "load_run": "vaekit.loading",
    "DataConfig": "vaekit.config",
    "ModelConfig": "vaekit.config",
    "RunConfig": "vaekit.config",
    "TrainConfig": "vaekit.config",
    "PRESETS": "vaekit.presets",
    "preset_config": "vaekit.presets",
    "resolve": "vaekit.presets",
    "VaekitError": "vaekit.errors",
    "VAE": "vaekit.models",
    "build_model": "vaekit.models",
    "NetworkSpec": "vaekit.models.custom",
    "Encoder": "vaekit.models.custom",
    "Decoder": "vaekit.models.custom",
    "Likelihood": "vaekit.likelihoods",
    "BernoulliLikelihood": "vaekit.likelihoods.bernoulli",
    "ContinuousBernoulliLikelihood": "vaekit.likelihoods.continuous_bernoulli",
    "GaussianLikelihood": "vaekit.likelihoods.gaussian",
    "DiscretizedLogisticLikelihood": "vaekit.likelihoods.logistic",
    "MixtureOfLogisticsLikelihood": "vaekit.likelihoods.logistic",
    "StandardNormalPrior": "vaekit.priors",
    "MixturePrior": "vaekit.priors",
    "VampPrior": "vaekit.priors",
    "elbo_over": "vaekit.metrics.elbo",
    "iwae_over": "vaekit.metrics.likelihood",
    "latent_usage": "vaekit.metrics.latents",
    "sweep": "vaekit.studies",
    "compare": "vaekit.studies",
    "read_study": "vaekit.studies",
    "tune": "vaekit.studies",
}

__all__ = [
    "PRESETS",
    "VAE",
    "BernoulliLikelihood",
    "Callback",
    "ContinuousBernoulliLikelihood",
    "DataConfig",
    "Decoder",
    "DiscretizedLogisticLikelihood",
    "EarlyStopping",
    "Encoder",
    "EpochReport",
    "GaussianLikelihood",
    "Likelihood",
    "MixtureOfLogisticsLikelihood",
    "MixturePrior",
    "ModelConfig",
    "NetworkSpec",
    "RunConfig",
    "StandardNormalPrior",
    "TrainConfig",
    "TrainedRun",
    "VaekitError",
    "VampPrior",
    "build_model",
    "compare",
    "elbo_over",
    "fit",
    "iwae_over",
    "latent_usage",
    "load_run",
    "preset_config",
    "read_study",
    "resolve",
    "resume",
    "sweep",
    "train_run",
    "tune",
]

if TYPE_CHECKING:
    from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from vaekit.errors import VaekitError
    from vaekit.likelihoods import Likelihood
    from vaekit.likelihoods.bernoulli import BernoulliLikelihood
    from vaekit.likelihoods.continuous_bernoulli import ContinuousBernoulliLikelihood
    from vaekit.likelihoods.gaussian import GaussianLikelihood
    from vaekit.likelihoods.logistic import DiscretizedLogisticLikelihood, MixtureOfLogisticsLikelihood
    from vaekit.loading import TrainedRun, load_run
    from vaekit.metrics.elbo import elbo_over
    from vaekit.metrics.latents import latent_usage
    from vaekit.metrics.likelihood import iwae_over
    from vaekit.models import VAE, build_model
    from vaekit.models.custom import Decoder, Encoder, NetworkSpec
    from vaekit.presets import PRESETS, preset_config, resolve
    from vaekit.priors import MixturePrior, StandardNormalPrior, VampPrior
    from vaekit.studies import compare, read_study, sweep, tune
    from vaekit.training.api import fit, resume
    from vaekit.training.callbacks import Callback, EarlyStopping, EpochReport
    from vaekit.training.run import train_run


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
