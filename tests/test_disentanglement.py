"""The disentanglement metrics against constructed codes: codes equal to the factors score (near) 1,
a rotation of them lower, codes independent of the factors near 0 (or chance, for the classifier
scores); the discretised mutual information against independent computations."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vaekit.metrics.disentanglement import (
    Representation,
    beta_vae_score,
    dci,
    dci_from_importance,
    discrete_mutual_information,
    factor_vae_score,
    histogram_discretize,
    mig,
    sap,
)

pytest.importorskip("sklearn")
SIZES = (4, 5, 6)
GRID = np.stack(np.meshgrid(*[np.arange(n) for n in SIZES], indexing="ij"), -1).reshape(-1, 3)  # (120, 3)
SMALL = {"train": 1500, "test": 600}


def representation(kind: str, seed: int = 0) -> Representation:
    rng = np.random.default_rng(seed)
    factors = np.repeat(GRID, 20, axis=0)  # every combination 20 times: 2,400 items
    standard = (factors - factors.mean(0)) / factors.std(0)
    if kind == "factors":
        codes = np.concatenate([standard, 0.01 * rng.normal(size=(len(factors), 2))], axis=1)  # 5 codes, 2 unused
    elif kind == "rotated":  # 45 degrees in the plane of the first two factors: each code mixes both equally
        c = math.cos(math.pi / 4)
        rotation = np.array([[c, -c, 0.0], [c, c, 0.0], [0.0, 0.0, 1.0]])
        codes = np.concatenate([standard @ rotation, 0.01 * rng.normal(size=(len(factors), 2))], axis=1)
    else:  # independent of the factors
        codes = rng.normal(size=(len(factors), 5))
    return Representation(codes + 0.001 * rng.normal(size=codes.shape), factors)


def test_the_mutual_information_is_the_textbook_sum_and_sklearns() -> None:
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, size=500)
    b = (a + rng.integers(0, 2, size=500)) % 5
    joint, pa, pb = Counter(zip(a, b, strict=True)), Counter(a), Counter(b)
    by_hand = sum(c / 500 * math.log((c / 500) / (pa[x] / 500 * pb[y] / 500)) for (x, y), c in joint.items())
    assert discrete_mutual_information(a, b) == pytest.approx(by_hand, rel=1e-12)
    assert discrete_mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), rel=1e-10)


def test_histogram_discretisation_puts_each_code_into_its_own_twenty_bins() -> None:
    codes = np.stack([np.linspace(0, 1, 200), np.linspace(-5, 5, 200)], axis=1)
    bins = histogram_discretize(codes, 20)
    assert bins.min() == 1 and bins.max() == 20 and all(len(np.unique(bins[:, j])) == 20 for j in range(2))


def test_dci_of_an_identity_importance_is_one_and_of_a_uniform_one_is_zero() -> None:
    assert dci_from_importance(np.eye(4)) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-6)


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        (lambda r, g: mig(r, g, train=SMALL["train"]), "mig"),
        (lambda r, g: sap(r, g, **SMALL), "sap"),
        (lambda r, g: dci(r, g, train=600, test=300), "disentanglement"),
        (lambda r, g: beta_vae_score(r, g, batch=32, train=300, test=150), "eval_accuracy"),
        (lambda r, g: factor_vae_score(r, g, batch=32, train=300, test=150, variance_items=1000), "eval_accuracy"),
    ],
    ids=["mig", "sap", "dci", "beta-vae", "factor-vae"],
)
def test_the_factors_score_highest_a_rotation_lower_and_independent_codes_lowest(metric, key: str) -> None:  # type: ignore[no-untyped-def]
    scores = {
        kind: float(metric(representation(kind), np.random.default_rng(2))[key])
        for kind in ("factors", "rotated", "independent")
    }
    chance = 1 / len(SIZES)
    # SAP's one-dimensional linear SVM cannot separate the 4 to 6 values of a factor: its best is
    # about 0.35 here even for the factors themselves (a known limit for discrete factors).
    high = {"sap": 0.3, "mig": 0.85, "disentanglement": 0.85}.get(key, 0.95)
    assert scores["factors"] >= high, scores
    assert scores["rotated"] < scores["factors"] - 0.05, scores
    floor = chance + 0.2 if key == "eval_accuracy" else 0.1
    assert scores["independent"] < floor, scores


@pytest.mark.slow
def test_evaluate_reports_the_metrics_on_data_with_factors_and_refuses_them_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import vaekit.metrics.evaluation as evaluation
    from tests.conftest import blob_images
    from tests.test_dsprites import SMALL as GRID_SIZES
    from vaekit.cli import main
    from vaekit.data import registry

    monkeypatch.setattr(registry, "DSPRITES_SIZES", GRID_SIZES)  # a 1,536-image dSprites grid
    for name in ("beta_vae_score", "factor_vae_score"):  # fewer points: the test is about the wiring
        real = getattr(evaluation, name)
        monkeypatch.setattr(evaluation, name, lambda rep, rng, real=real: real(rep, rng, train=200, test=100))
    run = tmp_path / "run"
    flags = ["--preset", "mlp", "--latent-dim", "4", "--epochs", "1", "--val-size", "100", "--quiet"]
    assert main(["train", "--dataset", "dsprites", *flags, "--out", str(run)]) == 0
    assert main(["evaluate", "--run", str(run), "--k", "2", "--no-quality", "--dci-train", "300"]) == 0
    printed = capsys.readouterr().out
    assert "MIG" in printed and "FactorVAE score" in printed and "DCI" in printed
    figures = json.loads((run / "eval.json").read_text())["disentanglement"]
    assert figures["factor_names"] == ["shape", "scale", "orientation", "posX", "posY"]
    assert 0.0 <= figures["mig"] <= 1.0 and np.array(figures["mutual_information_nats"]).shape == (4, 5)
    assert 0.0 <= figures["dci"]["disentanglement"] <= 1.0 and figures["dci_train_items"] == 300
    images, labels = blob_images(400, side=16, seed=4)
    np.savez(tmp_path / "plain.npz", x=images[:, 0], y=labels)
    plain = tmp_path / "plain"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(tmp_path / "plain.npz"),
                *flags[:-3],
                "--val-size",
                "20",
                "--quiet",
                "--out",
                str(plain),
            ]
        )
        == 0
    )
    assert main(["evaluate", "--run", str(plain), "--k", "2", "--no-quality", "--disentanglement"]) == 2
    assert "need data with known factors" in capsys.readouterr().err
    assert not (plain / "eval.json").exists()


def test_items_drawn_to_share_a_factor_share_it_and_cover_its_group() -> None:
    rep = representation("independent")
    rng = np.random.default_rng(5)
    rows = rep.sample(3000, rng)
    partners = rep.sharing(rows, 2, rng)
    assert np.array_equal(rep.factors[partners, 2], rep.factors[rows, 2])
    group = np.flatnonzero(rep.factors[:, 2] == rep.factors[rows[0], 2])  # 400 items share that value
    drawn = rep.sharing(np.full(20_000, rows[0]), 2, rng)
    assert set(drawn) <= set(group) and len(set(drawn)) > 0.95 * len(group)  # uniform over the group
    fixed = rep.fixed(1, 64, rng)
    assert len(set(rep.factors[fixed, 1])) == 1


@pytest.mark.slow
def test_the_factors_picture_is_drawn_for_data_with_factors_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from tests.conftest import blob_images
    from tests.test_dsprites import SMALL as GRID_SIZES
    from vaekit.cli import main
    from vaekit.data import load_dataset, registry
    from vaekit.data.dsprites import FACTOR_NAMES
    from vaekit.loading import load_run
    from vaekit.viz.gallery import PictureContext, traversals

    monkeypatch.setattr(registry, "DSPRITES_SIZES", GRID_SIZES)
    flags = ["--preset", "mlp", "--latent-dim", "4", "--epochs", "1", "--quiet"]
    run = tmp_path / "run"
    assert main(["train", "--dataset", "dsprites", *flags, "--val-size", "100", "--out", str(run)]) == 0
    assert main(["plot", "--run", str(run), "factors"]) == 0
    width, height = Image.open(run / "plots" / "factors.png").size
    assert width > 300 and height > 200
    trained = load_run(run)
    rows = traversals(PictureContext(trained, load_dataset(trained.config.data, progress=False)))
    labels = [tick.get_text() for tick in rows.axes[0].get_yticklabels()]  # one per traversed dimension
    assert len(labels) == 4 and all(label.startswith("z") for label in labels)
    assert all(any(name in label for name in FACTOR_NAMES) for label in labels), labels
    images, labels = blob_images(400, side=16, seed=4)
    np.savez(tmp_path / "plain.npz", x=images[:, 0], y=labels)
    plain = tmp_path / "plain"
    assert (
        main(["train", "--dataset", str(tmp_path / "plain.npz"), *flags, "--val-size", "20", "--out", str(plain)]) == 0
    )
    capsys.readouterr()
    assert main(["plot", "--run", str(plain), "factors"]) == 2
    assert "needs data with known factors" in capsys.readouterr().err
    assert main(["plot", "--run", str(plain), "all"]) == 0  # `all` leaves it out
    assert not (plain / "plots" / "factors.png").exists() and (plain / "plots" / "curves.png").exists()


def test_each_latent_is_labelled_with_the_factor_it_shares_most_information_with() -> None:
    from vaekit.viz.gallery import captured_factor, information_shares

    rng = np.random.default_rng(3)
    factors = np.stack([rng.integers(0, 4, 4000), rng.integers(0, 6, 4000)], axis=1)  # (N, 2)
    codes = np.stack([rng.normal(size=4000), factors[:, 1] + 0.01 * rng.normal(size=4000), factors[:, 0]], axis=1)
    shares = information_shares(codes.astype(np.float64), factors)  # (F, Z)
    assert shares.shape == (2, 3)
    assert shares[1, 1] > 0.95 and shares[0, 2] > 0.95 and shares[:, 0].max() < 0.02
    names = ("shape", "scale")
    assert captured_factor(shares[:, 1], names).startswith("scale (")
    assert captured_factor(shares[:, 2], names).startswith("shape (")
    assert captured_factor(shares[:, 0], names).startswith("no factor (best ")
