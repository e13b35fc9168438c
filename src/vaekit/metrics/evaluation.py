"""`vaekit evaluate`: every number about a trained run, printed as a table and saved as eval.json."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

from vaekit import methods
from vaekit.atomic import write_json
from vaekit.codes import encode_items
from vaekit.data import DatasetSplits, ImageSet
from vaekit.data.transforms import labelled_batches
from vaekit.errors import VaekitError
from vaekit.loading import TrainedRun
from vaekit.metrics.disentanglement import Representation, beta_vae_score, dci, factor_vae_score, mig, sap
from vaekit.metrics.elbo import column_terms_per_item, elbo_summary, elbo_terms_per_item, reconstruction_over
from vaekit.metrics.latents import bottom_layer_active_units, latent_usage
from vaekit.metrics.likelihood import iwae_per_item, iwae_summary
from vaekit.metrics.meaning import figure_description, figure_meaning, has_elbo, item_word, meaning_of_kind
from vaekit.metrics.sample_quality import sample_quality
from vaekit.metrics.scores import ELBO_BATCH, IWAE_BATCH, auroc, cross_entropy_floor, has_excess, score_by
from vaekit.objectives.base import StepBatch, own_parts
from vaekit.objectives.registry import build_objective

DCI_TRAIN = 10_000  # disentanglement_lib's: the items DCI's classifiers fit on
COLLAPSE_FRACTION = 0.5  # warn when fewer than this share of latent dimensions are active


@dataclass(frozen=True)
class EvaluationInput:
    """What a section of `vaekit evaluate` measures on: the run, its data, the chosen items."""

    run: TrainedRun
    splits: DatasetSplits
    chosen: ImageSet
    seed: int
    quality: bool  # the sample-quality figures were asked for
    factors: bool | None  # the disentanglement metrics: None when the data has factors, True: insist
    k: int = 1000  # importance samples per item of the IWAE estimate
    dci_train: int = DCI_TRAIN  # items DCI's classifiers fit on (half as many test them)
    batch_size: int = IWAE_BATCH  # items per IWAE pass
    seconds: dict[str, float] = field(default_factory=dict)  # each pass's wall time, filled as they run
    # Per-item figures a section computed, for the sections after it ("nelbo", "iwae": (N,) float64
    # nats, as metrics/scores.py defines them): the bound's passes are the anomaly scores' too.
    per_item: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray | None:
        """A conditional model is measured given each item's label: -log p(x|y)."""
        return self.run.model.conditioning(self.chosen.labels, "the evaluated set")


class Section(Protocol):
    """A part of the evaluation contributed by the part of the run it is about: it measures its
    figures (None where it does not apply) and knows its place in eval.json and its table rows.
    `key` None: its figures are eval.json's top-level keys (the bound's and the latent's, the
    names every reader of eval.json knows), and `rows` reads them from the whole evaluation."""

    @property
    def key(self) -> str | None: ...

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None: ...

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]: ...


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
    dci_train: int = DCI_TRAIN,
) -> dict[str, Any]:
    """Every figure of `vaekit evaluate` over `split` (its first `limit` images when given).
    `factors`: the disentanglement metrics (None: when the data has factors; True: insist);
    `dci_train`: the items DCI's classifiers fit on (disentanglement_lib's 10,000 by default)."""
    chosen = getattr(splits, split).take(slice(0, limit))
    data = run.config.data
    result: dict[str, Any] = {
        "split": split,
        "images": len(chosen.images),
        "first_images": limit,  # None: the whole split
        "seed": seed,
        "checkpoint_epoch": run.info.get("epoch"),
        "figure_description": figure_description(
            run.model.likelihood, data, bool(run.model.classes), run.config.objective.name
        ),
        "per": item_word(data),
        "posterior": run.config.posterior.name,
    }
    given = EvaluationInput(run, splits, chosen, seed, quality, factors, k, dci_train, batch_size)
    for section in sections_of(result):
        started = time.perf_counter()
        figures = section.measure(given)
        if section.key is None:
            result.update(figures or {})
            continue
        result[section.key] = figures
        if figures is not None:
            given.seconds[section.key] = time.perf_counter() - started
    return {**result, "seconds": given.seconds, "units": units(item_word(data))}


def _bound_figures(given: EvaluationInput) -> dict[str, Any]:
    """The -ELBO and its parts and the IWAE estimate with K samples, keyed by what the figure is
    (elbo_nelbo_nats / iwae_nll_nats only for a likelihood, else e.g. elbo_cross_entropy_nats),
    *_bits_per_dim only where honest; each pass's time in `given.seconds`."""
    run, data, seed, k = given.run, given.run.config.data, given.seed, given.k
    images: Any = given.chosen.images  # in memory or on disk: the passes read either
    started = time.perf_counter()
    recon, kl = elbo_terms_per_item(run.model, images, data, ELBO_BATCH, seed, given.labels)
    elbo = elbo_summary(run.model, data, recon, kl)
    given.seconds["elbo"] = time.perf_counter() - started
    started = time.perf_counter()
    log_px = iwae_per_item(run.model, images, data, k, given.batch_size, seed, given.labels)
    iwae = iwae_summary(run.model, data, log_px, k)
    given.seconds["iwae"] = time.perf_counter() - started
    if given.batch_size == IWAE_BATCH:  # what score_items computes, to the last bit
        given.per_item.update(nelbo=(recon + kl).numpy(), iwae=(-log_px).numpy())
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
    run: TrainedRun,
    chosen: ImageSet,
    names: tuple[str, ...] | None,
    seed: int,
    wanted: bool | None,
    dci_train: int = DCI_TRAIN,
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
        "dci": timed("dci", lambda r, g: dci(r, g, train=dci_train, test=dci_train // 2)),
        "dci_train_items": dci_train,
        "seconds": seconds,
    }


@dataclass(frozen=True)
class BoundSection:
    """The -ELBO, its parts and the IWAE bound (or a deterministic encoder's reconstruction cost),
    as top-level keys of eval.json."""

    key: str | None = None

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        if has_elbo(given.run.config.objective.name):
            return _bound_figures(given)
        # a deterministic encoder (a WAE): its reconstruction cost in place of an ELBO
        started = time.perf_counter()
        images: Any = given.chosen.images
        model, data = given.run.model, given.run.config.data
        recon = reconstruction_over(model, images, data, ELBO_BATCH, seed=given.seed, labels=given.labels)
        given.seconds["reconstruction"] = time.perf_counter() - started
        return {"figure": "reconstruction", "elbo_recon_at_mean_nats": recon.recon_nats}

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        meaning = meaning_of_kind(figures.get("figure", "likelihood"))
        bound = meaning.label
        per = f"nats/{figures.get('per', 'image')}"
        if meaning.kind == "reconstruction":
            return [
                ("reconstruction at z = mu(x)", f"{figures[meaning.elbo_key]:.2f} {per}"),
                ("likelihood figure", "none: a deterministic encoder has no ELBO and no IWAE bound"),
            ]
        iwae_error = figures.get("iwae_standard_error_nats", 0.0)
        return [
            (f"negative ELBO ({bound})", f"{figures[meaning.elbo_key]:.2f} {per}"),
            ("  reconstruction", f"{figures['elbo_recon_nats']:.2f} {per}"),
            ("  KL", f"{figures['elbo_kl_nats']:.2f} {per}"),
            ("  bits/dim", f"{figures['elbo_bits_per_dim']:.4f}" if "elbo_bits_per_dim" in figures else "none"),
            (
                f"{bound}, IWAE K={figures['iwae_k']}",
                f"{figures[meaning.iwae_key]:.2f} {per} "
                f"(± {iwae_error:.2f} standard error over {figures.get('per', 'image')}s)",
            ),
            ("  bits/dim", f"{figures['iwae_bits_per_dim']:.4f}" if "iwae_bits_per_dim" in figures else "none"),
        ]


@dataclass(frozen=True)
class LatentSection:
    """How much of the latent the model uses (metrics/latents.py): active units and the KL per
    dimension, per layer, as top-level keys of eval.json. Discrete codes have no active units to
    count: their family's own section says how they are used."""

    key: str | None = None

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        run, images = given.run, cast(Any, given.chosen.images)  # in memory or on disk: both read
        data, labels = run.config.data, given.labels
        usage = latent_usage(run.model, images, data, seed=given.seed, labels=labels).to_dict()
        if not has_elbo(run.config.objective.name):  # KL per dimension means nothing for a point mass
            usage.pop("kl_per_dim_nats", None)
        if run.config.model.stochastic_layers == 2:  # usage above is the top layer z2; z1 is counted apart
            usage["bottom_active_units"] = bottom_layer_active_units(
                run.model, images, data, seed=given.seed, labels=labels
            )
            usage["bottom_latent_dim"] = run.config.model.latent_dim
        return {"latent_dim": run.model.latent_dim, **usage}

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        if _discrete(figures):
            return []
        counted = f"{figures['active_units']} of {figures['latent_dim']} (Cov_x E[z_j] > 0.01)"
        if "bottom_active_units" not in figures:
            return [("active units", counted)]
        bottom = f"{figures['bottom_active_units']} of {figures['bottom_latent_dim']}"
        return [("active units, z2", counted), ("active units, z1", bottom)]


@dataclass(frozen=True)
class QualitySection:
    """How a sample looks to vaekit's own image classifier (metrics/sample_quality.py)."""

    key: str = "quality"

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        run = given.run
        if not given.quality or given.splits.is_table or not run.model.can_sample:
            return None
        scores = sample_quality(run.model, given.splits, run.config.data, seed=given.seed)
        return None if scores is None else scores.to_dict()

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [
            ("Frechet distance, samples", f"{figures['frechet_distance']:.2f} (vaekit classifier features)"),
            ("  floor: train vs test", f"{figures['frechet_distance_test_vs_train']:.2f}"),
            (
                "classifier acc., recon.",
                f"{figures['recon_accuracy']:.4f} (on real images {figures['classifier_test_accuracy']:.4f})",
            ),
        ]
        if figures.get("label_agreement") is not None:
            agreement = f"{figures['label_agreement']:.4f} (vaekit's classifier agrees with the label asked for)"
            rows.append(("samples of the asked class", agreement))
        return rows


@dataclass(frozen=True)
class ObjectiveSection:
    """The terms of the objective the run optimised, beyond the -ELBO's own."""

    key: str = "objective"

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        return objective_terms(given.run, given.chosen, len(given.splits.train), given.seed)

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        terms = [f"{k} {v:.4g}" for k, v in figures.items() if k not in ("name", "batch_size", "note")]
        shown = ", ".join(terms) if terms else figures.get("note", "")
        return [(f"objective {figures['name']}", f"{shown} (per item, batches of {figures['batch_size']})")]


@dataclass(frozen=True)
class DisentanglementSection:
    """The disentanglement metrics, where the data has known factors."""

    key: str = "disentanglement"

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        names = given.splits.factor_names
        return disentanglement_figures(given.run, given.chosen, names, given.seed, given.factors, given.dci_train)

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        dci_figures = figures["dci"]
        return [
            ("beta-VAE score", f"{figures['beta_vae_score']['eval_accuracy']:.4f} (accuracy)"),
            ("FactorVAE score", f"{figures['factor_vae_score']['eval_accuracy']:.4f} (accuracy)"),
            ("MIG", f"{figures['mig']:.4f}"),
            ("SAP", f"{figures['sap']:.4f}"),
            (
                "DCI",
                f"disentanglement {dci_figures['disentanglement']:.4f}, "
                f"completeness {dci_figures['completeness']:.4f}, "
                f"informativeness {dci_figures['informativeness_test']:.4f}",
            ),
        ]


@dataclass(frozen=True)
class ColumnsSection:
    """A table's reconstruction term column by column (a run with one likelihood per column): what
    each column costs in nats, and how many of its cells were empty (left out of the figure)."""

    key: str = "columns"

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        run = given.run
        likelihood = run.model.likelihood
        if not hasattr(likelihood, "log_prob_by_column") or not has_elbo(run.config.objective.name):
            return None
        images = np.asarray(given.chosen.images)
        terms = column_terms_per_item(run.model, images, run.config.data, ELBO_BATCH, given.seed, given.labels)
        schema = run.schema
        empty = [int(np.isnan(images.reshape(len(images), -1)[:, span]).any(axis=1).sum()) for span in schema.slices]
        means = terms.mean(0).tolist() if len(terms) else [0.0] * len(schema.names)
        return {
            "recon_nats": dict(zip(schema.names, means, strict=True)),
            "empty_cells": dict(zip(schema.names, empty, strict=True)),
            "kinds": dict(zip(schema.names, schema.kinds, strict=True)),
        }

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for name, nats in figures["recon_nats"].items():
            empty = figures["empty_cells"][name]
            note = f", {empty} empty cells left out" if empty else ""
            rows.append((f"  column {name}", f"{nats:.3f} nats/item ({figures['kinds'][name]}{note})"))
        return [("reconstruction by column", ""), *rows]


@dataclass(frozen=True)
class AnomalySection:
    """One-class anomaly detection (--normal-classes): the AUROC of each anomaly score at telling
    the classes the run never saw from those it was trained on."""

    key: str = "anomaly"

    def measure(self, given: EvaluationInput) -> dict[str, Any] | None:
        run, chosen = given.run, given.chosen
        normal = run.config.data.normal_classes
        if normal is None:
            return None
        if chosen.labels is None:
            raise VaekitError(
                f"--normal-classes runs are scored by the labels of the {given.splits.name} test split, which has none"
            )
        anomalous = ~np.isin(chosen.labels, normal)
        images, data = np.asarray(chosen.images), run.config.data
        named = {
            name: given.per_item[name]
            if name in given.per_item
            else score_by(name, run.model, images, data, given.k, given.seed, given.labels)
            for name in ("nelbo", "iwae", "recon")
        }
        if has_excess(run.model):
            named["excess"] = named["nelbo"] - cross_entropy_floor(run.model, images, data)
        return {
            "normal_classes": list(normal),
            "anomalies": int(anomalous.sum()),
            "items": len(anomalous),
            "iwae_k": given.k,
            **{f"auroc_{name}": auroc(values, anomalous) for name, values in named.items()},
        }

    def rows(self, figures: dict[str, Any]) -> list[tuple[str, str]]:
        normal = ",".join(map(str, figures["normal_classes"]))
        told = f"{figures['anomalies']} items of other classes among {figures['items']}"
        rows = [("anomalies (one-class)", f"normal: class {normal}; {told}")]
        labels = {"nelbo": "-ELBO", "iwae": f"IWAE K={figures['iwae_k']}", "recon": "recon. error", "excess": "excess"}
        for name, label in labels.items():
            if f"auroc_{name}" in figures:
                rows.append((f"  AUROC by {label}", f"{figures[f'auroc_{name}']:.4f}"))
        return rows


def family_of(result: dict[str, Any]) -> methods.MethodSpec:
    """The spec of the posterior family an evaluation is of (the default one for an eval.json
    written before it said)."""
    return methods.find("posterior", result.get("posterior", methods.KINDS["posterior"].default))


def sections_of(result: dict[str, Any]) -> list[Section]:
    """The sections of an evaluation, in the table's order: the bound, a table's columns, the latent's use, the
    posterior family's own (its spec's "evaluation" hook: a VQ-VAE's codebook), sample quality,
    the objective's terms, disentanglement, one-class anomaly detection."""
    family: Section | None = family_of(result).hook("evaluation")  # type: ignore[assignment]
    own = [family] if family is not None else []
    return [
        BoundSection(),
        ColumnsSection(),
        LatentSection(),
        *own,
        QualitySection(),
        ObjectiveSection(),
        DisentanglementSection(),
        AnomalySection(),
    ]


def _discrete(result: dict[str, Any]) -> bool:
    """The run's codes are discrete (a VQ-VAE's): no active units to count, no collapse to warn of."""
    return "discrete_codes" in family_of(result).offers


def collapse_warning(result: dict[str, Any]) -> str | None:
    if _discrete(result):  # a point code on a codebook cannot collapse onto a prior; its codes' use is shown
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


def format_table(result: dict[str, Any]) -> str:
    """The table `vaekit evaluate` prints and the report shows, from eval.json's content."""
    rows: list[tuple[str, str]] = []
    for section in sections_of(result):
        if section.key is None:
            rows += section.rows(result)
        elif result.get(section.key):
            rows += section.rows(result[section.key])
    width = max(len(name) for name, _ in rows)
    header = f"{result['split']} set, {result['images']} {result.get('per', 'image')}s, seed {result['seed']}"
    note = family_of(result).figure_note
    if note:
        header += f"\n  posterior: {note}"
    if result.get("figure_description"):
        header += f"\n  figures: {result['figure_description']}"
    return "\n".join([header, *(f"  {name:<{width}}  {value}" for name, value in rows)])


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
