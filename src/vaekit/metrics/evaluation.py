"""`vaekit evaluate`: every number about a trained run, printed as a table and saved as eval.json."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.atomic import write_json
from vaekit.codes import encode_items
from vaekit.data import DatasetSplits, ImageSet
from vaekit.data.transforms import labelled_batches
from vaekit.errors import VaekitError
from vaekit.loading import TrainedRun
from vaekit.metrics.disentanglement import Representation, beta_vae_score, dci, factor_vae_score, mig, sap
from vaekit.metrics.elbo import elbo_over, reconstruction_over
from vaekit.metrics.latents import bottom_layer_active_units, latent_usage
from vaekit.metrics.likelihood import iwae_over
from vaekit.metrics.meaning import figure_description, figure_meaning, has_elbo, item_word, meaning_of_kind
from vaekit.metrics.sample_quality import sample_quality
from vaekit.metrics.scores import ELBO_BATCH, IWAE_BATCH
from vaekit.models.ladder import LadderVAE
from vaekit.models.vq import VQVAE
from vaekit.objectives.base import StepBatch, own_parts
from vaekit.objectives.registry import build_objective
from vaekit.posteriors.vq import perplexity

COLLAPSE_FRACTION = 0.5  # warn when fewer than this share of latent dimensions are active


def evaluate_run(
    run: TrainedRun,
    splits: DatasetSplits,
    split: str = "test",
    k: int = 1000,
    seed: int = 0,
    quality: bool = True,
    batch_size: int = IWAE_BATCH,
    limit: int | None = None,
    factors: bool | None = None,
) -> dict[str, Any]:
    """Every figure of `vaekit evaluate` over `split` (its first `limit` images when given).
    `factors`: the disentanglement metrics (None: when the data has factors; True: insist)."""
    chosen = getattr(splits, split).take(slice(0, limit))
    images = chosen.images
    # A conditional model is measured given each image's label: -log p(x|y).
    labels = run.model.conditioning(chosen.labels, f"the {split} set")
    data = run.config.data
    seconds: dict[str, float] = {}
    if has_elbo(run.config.objective.name):
        figures = _bound_figures(run, images, labels, k, batch_size, seed, seconds)
    else:  # a deterministic encoder (a WAE): its reconstruction cost in place of an ELBO
        started = time.perf_counter()
        recon = reconstruction_over(run.model, images, data, ELBO_BATCH, seed=seed, labels=labels)
        seconds["reconstruction"] = time.perf_counter() - started
        figures = {"figure": "reconstruction", "elbo_recon_at_mean_nats": recon.recon_nats}

    usage = latent_usage(run.model, images, data, seed=seed, labels=labels).to_dict()
    if figures["figure"] == "reconstruction":  # KL per dimension means nothing for a point mass
        usage.pop("kl_per_dim_nats", None)
    bottom: dict[str, int] = {}
    if isinstance(run.model, LadderVAE):  # usage above is the top layer z2; z1 is counted apart
        bottom = {
            "bottom_active_units": bottom_layer_active_units(run.model, images, data, seed=seed, labels=labels),
            "bottom_latent_dim": run.model.bottom_dim,
        }
    scores = None
    if quality and not splits.is_table and run.model.can_sample:  # the quality figures use vaekit's image classifier
        started = time.perf_counter()
        scores = sample_quality(run.model, splits, data, seed=seed)
        seconds["quality"] = time.perf_counter() - started
    objective = objective_terms(run, chosen, len(splits.train), seed)
    codebook = codebook_use(run, chosen, seed) if isinstance(run.model, VQVAE) else None
    started = time.perf_counter()
    disentanglement = disentanglement_figures(run, chosen, splits.factor_names, seed, factors)
    if disentanglement is not None:
        seconds["disentanglement"] = time.perf_counter() - started
    return {
        "split": split,
        "images": len(images),
        "first_images": limit,  # None: the whole split
        "seed": seed,
        "checkpoint_epoch": run.info.get("epoch"),
        "figure_description": figure_description(
            run.model.likelihood, data, bool(run.model.classes), run.config.objective.name
        ),
        "per": item_word(data),
        **figures,
        "posterior": run.config.posterior.name,
        "latent_dim": run.model.latent_dim,
        **usage,
        **bottom,
        "quality": None if scores is None else scores.to_dict(),
        "objective": objective,
        "codebook": codebook,
        "disentanglement": disentanglement,
        "seconds": seconds,
        "units": units(item_word(data)),
    }


def _bound_figures(
    run: TrainedRun,
    images: np.ndarray,
    labels: np.ndarray | None,
    k: int,
    batch_size: int,
    seed: int,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The -ELBO and its parts and the IWAE estimate with K samples, keyed by what the figure is
    (elbo_nelbo_nats / iwae_nll_nats only for a likelihood, else e.g. elbo_cross_entropy_nats),
    *_bits_per_dim only where honest; each pass's time in `seconds`."""
    data = run.config.data
    started = time.perf_counter()
    elbo = elbo_over(run.model, images, data, batch_size=ELBO_BATCH, seed=seed, labels=labels)
    seconds["elbo"] = time.perf_counter() - started
    started = time.perf_counter()
    iwae = iwae_over(run.model, images, data, k=k, batch_size=batch_size, seed=seed, labels=labels)
    seconds["iwae"] = time.perf_counter() - started
    meaning = figure_meaning(run.model.likelihood, data)
    bits = {} if iwae.bits_per_dim is None else {"iwae_bits_per_dim": iwae.bits_per_dim}
    if elbo.bits_per_dim is not None:
        bits["elbo_bits_per_dim"] = elbo.bits_per_dim
    return {
        "figure": meaning.kind,
        meaning.elbo_key: elbo.nelbo_nats,
        "elbo_recon_nats": elbo.recon_nats,
        "elbo_kl_nats": elbo.kl_nats,
        "iwae_k": k,
        meaning.iwae_key: iwae.nll_nats,
        "iwae_standard_error_nats": iwae.standard_error_nats,
        **bits,
    }


def codebook_use(run: TrainedRun, chosen: ImageSet, seed: int) -> dict[str, Any]:
    """A VQ-VAE's codes over `chosen`: how many of the K codes it uses, their perplexity (exp of
    the entropy of their frequencies), and which prior the figures' rate is under."""
    model = run.model
    assert isinstance(model, VQVAE)
    codes = encode_items(model, np.asarray(chosen.images), run.config.data, seed=seed).named["z_codes"]
    counts = torch.bincount(torch.from_numpy(codes).flatten(), minlength=model.codebook.size)
    return {
        "size": model.codebook.size,
        "codes_per_item": model.layout.count,
        "codes_used": int((counts > 0).sum()),
        "perplexity": float(perplexity(counts.double())),
        "prior": "learned" if model.code_prior.trained else "uniform",
        "prior_steps": int(model.code_prior.trained_steps),
        "uniform_rate_nats": model.layout.count * math.log(model.codebook.size),
    }


def units(item: str) -> dict[str, str]:
    """What eval.json's keys are measured in, by pattern."""
    return {
        "*_nats": f"nats per {item}",
        "*_bits_per_dim": "bits per dimension",
        "kl_per_dim_nats": f"nats per {item}, per latent dimension",
        "frechet_distance*": "squared distance in the feature space of vaekit's own classifier (not Inception FID)",
        "disentanglement": "scores and accuracies in [0, 1]; mutual_information_nats in nats",
    }


@torch.no_grad()
def objective_terms(run: TrainedRun, chosen: ImageSet, train_items: int, seed: int) -> dict[str, Any] | None:
    """The mean per item of each term of the objective the run optimised, over `chosen` in
    batches of its training batch size (the batch-level estimators, β-TCVAE's q(z) among them,
    see batches of that size), at the kept checkpoint's step; None for the ELBO and IWAE, which
    have no terms beyond the -ELBO's own."""
    config = run.config
    objective = build_objective(config, dataset_size=train_items)
    if not objective.terms:
        return None
    # a family with a loss of its own names it after itself (the VQ-VAE's: "vq-vae")
    own_loss = "objective" in config.posterior.spec.hooks
    name = f"{config.posterior.name}-vae" if own_loss else config.objective.name
    result: dict[str, Any] = {"name": name, "batch_size": config.train.batch_size}
    if own_parts(objective) is not None:  # FactorVAE: its discriminator trains with the run, is not kept
        result["note"] = "its terms need the discriminator, which is not kept with the weights: see metrics.jsonl"
        return result
    model, device = run.model, run.model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = model.conditioning(chosen.labels, "the evaluated set")
    sums = torch.zeros(len(objective.terms), dtype=torch.float64)
    count = 0
    step = int(run.info.get("step") or 0)
    images = np.asarray(chosen.images)
    for x, y in labelled_batches(images, labels, config.data, config.train.batch_size, device, generator):
        if len(x) < 2 and count:  # a last batch of one has no batch statistics: leave it out
            break
        batch = StepBatch(x, y, step, 1.0, slice(0, len(x)), len(x), generator)
        terms = objective(model, batch)
        sums += torch.stack([terms.extras[name].sum() for name in objective.terms]).double().cpu()
        count += len(x)
    result.update({name: float(total / max(1, count)) for name, total in zip(objective.terms, sums, strict=True)})
    return result


def disentanglement_figures(
    run: TrainedRun, chosen: ImageSet, names: tuple[str, ...] | None, seed: int, wanted: bool | None
) -> dict[str, Any] | None:
    """The disentanglement metrics (metrics/disentanglement.py) of the posterior means of `chosen`,
    sampled from its own items; None when not wanted or, unasked, when the data has no factors."""
    if wanted is False or (wanted is None and chosen.factors is None):
        return None
    if chosen.factors is None:
        raise VaekitError(
            "the disentanglement metrics need data with known factors (--dataset dsprites, or an .npz with `factors`); "
            "this run's data has none: leave out --disentanglement"
        )
    if run.model.latent_dim < 2:
        raise VaekitError("the disentanglement metrics compare latent dimensions: this run has fewer than 2")
    labels = run.model.conditioning(chosen.labels, "the evaluated set")
    codes = encode_items(run.model, np.asarray(chosen.images), run.config.data, seed=seed, labels=labels).mean
    rep = Representation(codes.astype(np.float64), chosen.factors)
    rng = np.random.default_rng(seed)
    seconds: dict[str, float] = {}

    def timed(name: str, metric: Any) -> Any:
        started = time.perf_counter()
        value = metric(rep, rng)
        seconds[name] = time.perf_counter() - started
        return value

    return {
        "factor_names": list(names or (f"factor_{j}" for j in range(chosen.factors.shape[1]))),
        "items": len(codes),
        "beta_vae_score": timed("beta_vae_score", beta_vae_score),
        "factor_vae_score": timed("factor_vae_score", factor_vae_score),
        **timed("mig", mig),
        **timed("sap", sap),
        "dci": timed("dci", dci),
        "seconds": seconds,
    }


def collapse_warning(result: dict[str, Any]) -> str | None:
    if result.get("codebook"):  # a VQ-VAE's point code cannot collapse onto a prior; its codes' use is shown
        return None
    active, total = result["active_units"], result["latent_dim"]
    if "bottom_active_units" in result:
        # Two layers: the code can live in z1 alone; only a collapsed z1 is posterior collapse.
        active, total = result["bottom_active_units"], result["bottom_latent_dim"]
        if active < COLLAPSE_FRACTION * total:
            return (
                f"warning: only {active} of {total} dimensions of z1 are active (posterior collapse); "
                "try a longer --warmup-steps or a smaller --latent-dim"
            )
        return None
    if active < COLLAPSE_FRACTION * total:
        return (
            f"warning: only {active} of {total} latent dimensions are active (posterior collapse); "
            "try --warmup-steps, --free-bits or a smaller --latent-dim"
        )
    return None


def _figure_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The table's first rows: the -ELBO and IWAE figures, or a WAE's reconstruction cost."""
    meaning = meaning_of_kind(result.get("figure", "likelihood"))
    bound = meaning.label
    per = f"nats/{result.get('per', 'image')}"
    if meaning.kind == "reconstruction":
        return [
            ("reconstruction at z = mu(x)", f"{result[meaning.elbo_key]:.2f} {per}"),
            ("likelihood figure", "none: a deterministic encoder has no ELBO and no IWAE bound"),
            ("active units", f"{result['active_units']} of {result['latent_dim']} (Cov_x E[z_j] > 0.01)"),
        ]
    return [
        (f"negative ELBO ({bound})", f"{result[meaning.elbo_key]:.2f} {per}"),
        ("  reconstruction", f"{result['elbo_recon_nats']:.2f} {per}"),
        ("  KL", f"{result['elbo_kl_nats']:.2f} {per}"),
        ("  bits/dim", f"{result['elbo_bits_per_dim']:.4f}" if "elbo_bits_per_dim" in result else "none"),
        (
            f"{bound}, IWAE K={result['iwae_k']}",
            f"{result[meaning.iwae_key]:.2f} {per} "
            f"(± {result.get('iwae_standard_error_nats', 0.0):.2f} standard error over {result.get('per', 'image')}s)",
        ),
        ("  bits/dim", f"{result['iwae_bits_per_dim']:.4f}" if "iwae_bits_per_dim" in result else "none"),
        ("active units", f"{result['active_units']} of {result['latent_dim']} (Cov_x E[z_j] > 0.01)"),
    ]


def format_table(result: dict[str, Any]) -> str:
    rows = _figure_rows(result)
    codebook = result.get("codebook")
    if codebook:  # in place of active units, which mean nothing for discrete codes
        prior = (
            f"learned ({codebook['prior_steps']} steps)"
            if codebook["prior"] == "learned"
            else f"uniform, {codebook['uniform_rate_nats']:.2f} nats per item (vaekit train-prior learns one)"
        )
        rows[-1] = (
            "codebook",
            f"{codebook['codes_used']} of {codebook['size']} codes used, perplexity {codebook['perplexity']:.1f}",
        )
        rows.append(("  prior over codes", prior))
    if "bottom_active_units" in result:
        rows[-1] = ("active units, z2", rows[-1][1])
        rows.append(("active units, z1", f"{result['bottom_active_units']} of {result['bottom_latent_dim']}"))
    quality = result.get("quality")
    if quality:
        rows += [
            ("Frechet distance, samples", f"{quality['frechet_distance']:.2f} (vaekit classifier features)"),
            ("  floor: train vs test", f"{quality['frechet_distance_test_vs_train']:.2f}"),
            (
                "classifier acc., recon.",
                f"{quality['recon_accuracy']:.4f} (on real images {quality['classifier_test_accuracy']:.4f})",
            ),
        ]
        if quality.get("label_agreement") is not None:
            rows.append(
                (
                    "samples of the asked class",
                    f"{quality['label_agreement']:.4f} (vaekit's classifier agrees with the label asked for)",
                )
            )
    objective = result.get("objective")
    if objective:
        terms = [f"{k} {v:.4g}" for k, v in objective.items() if k not in ("name", "batch_size", "note")]
        shown = ", ".join(terms) if terms else objective.get("note", "")
        rows.append((f"objective {objective['name']}", f"{shown} (per item, batches of {objective['batch_size']})"))
    factors = result.get("disentanglement")
    if factors:
        dci_figures = factors["dci"]
        rows += [
            ("beta-VAE score", f"{factors['beta_vae_score']['eval_accuracy']:.4f} (accuracy)"),
            ("FactorVAE score", f"{factors['factor_vae_score']['eval_accuracy']:.4f} (accuracy)"),
            ("MIG", f"{factors['mig']:.4f}"),
            ("SAP", f"{factors['sap']:.4f}"),
            (
                "DCI",
                f"disentanglement {dci_figures['disentanglement']:.4f}, "
                f"completeness {dci_figures['completeness']:.4f}, "
                f"informativeness {dci_figures['informativeness_test']:.4f}",
            ),
        ]
    width = max(len(name) for name, _ in rows)
    header = f"{result['split']} set, {result['images']} {result.get('per', 'image')}s, seed {result['seed']}"
    if result.get("posterior", "gaussian") != "gaussian":
        header += f"\n  posterior: {POSTERIOR_WORDS[result['posterior']]}"
    if result.get("figure_description"):
        header += f"\n  figures: {result['figure_description']}"
    return "\n".join([header, *(f"  {name:<{width}}  {value}" for name, value in rows)])


# What a figure's KL part is, for each posterior family beyond the Gaussian.
POSTERIOR_WORDS = {
    "iaf": "inverse autoregressive flow; KL by Monte Carlo, the IWAE weights with its exact log q(z|x)",
    "vmf": "von Mises-Fisher on the sphere, uniform prior; KL in closed form",
    "vq": "a point mass on the nearest codes; KL = the rate -log p(codes), IWAE = the ELBO",
}


def evaluation_file(result: dict[str, Any]) -> str:
    """eval.json for the whole test set (what `vaekit report` shows); other evaluations get their
    own name, so a quick estimate never replaces the full one."""
    name = "eval" if result["split"] == "test" else f"eval-{result['split']}"
    if result.get("first_images") is not None:
        name += f"-first{result['first_images']}"
    return name + ".json"


def save_evaluation(run_dir: Path, result: dict[str, Any]) -> Path:
    path = run_dir / evaluation_file(result)
    write_json(path, result)
    return path
