"""One-class anomaly detection (--normal-classes): training and validation see the normal classes
only, the test split keeps every class, and `vaekit evaluate` gives each score's AUROC, checked
against scikit-learn's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.loading import load_run
from vaekit.metrics.scores import auroc, score_items
from vaekit.studies import read_study

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_is_scikit_learns_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties
    anomalous = rng.random(300) < 0.3
    scores[anomalous] += rng.random(int(anomalous.sum()))  # anomalies score a little higher
    assert auroc(scores, anomalous) == pytest.approx(sklearn_metrics.roc_auc_score(anomalous, scores), abs=1e-12)
    assert auroc(-scores, anomalous) == pytest.approx(1.0 - auroc(scores, anomalous), abs=1e-12)


@pytest.fixture(scope="module")
def one_class_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one-class")
    images, labels = blob_images(1200, side=12, seed=3)
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    args = ["train", "--dataset", str(root / "blobs.npz"), "--out", str(root / "run"), "--normal-classes", "2"]
    args += ["--epochs", "3", "--batch-size", "50", "--hidden-sizes", "32", "--latent-dim", "3", "--quiet"]
    assert main(args) == 0
    return root / "run"


def test_training_sees_the_normal_class_and_the_test_split_every_class(one_class_run: Path) -> None:
    splits = load_run(one_class_run).load_data()
    assert splits.train.labels is not None and splits.val.labels is not None and splits.test.labels is not None
    assert set(splits.train.labels.tolist()) == set(splits.val.labels.tolist()) == {2}
    assert set(splits.test.labels.tolist()) == {0, 1, 2, 3}


def test_evaluate_gives_each_scores_auroc(one_class_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--run", str(one_class_run), "--k", "5", "--no-quality"]) == 0
    printed = capsys.readouterr().out
    assert "AUROC by -ELBO" in printed
    figures = json.loads((one_class_run / "eval.json").read_text())["anomaly"]
    run = load_run(one_class_run)
    test = run.load_data().test
    assert test.labels is not None
    anomalous = test.labels != 2
    scores = score_items(run.model, test.array, run.config.data, k=5)
    assert figures["anomalies"] == int(anomalous.sum()) and figures["normal_classes"] == [2]
    for name in ("nelbo", "iwae", "recon", "excess"):
        expected = sklearn_metrics.roc_auc_score(anomalous, scores.by(name))
        assert figures[f"auroc_{name}"] == pytest.approx(expected, abs=1e-9)
    assert figures["auroc_nelbo"] > 0.9  # a square in another quadrant is plainly unlike class 2's


def test_normal_classes_need_labels_and_a_known_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, _ = blob_images(120, side=12)
    np.save(tmp_path / "unlabelled.npy", images[:, 0])
    base = ["train", "--epochs", "1", "--hidden-sizes", "8", "--latent-dim", "2", "--quiet"]
    out = tmp_path / "run"
    assert main([*base, "--dataset", str(tmp_path / "unlabelled.npy"), "--out", str(out), "--normal-classes", "1"]) == 2
    assert "has none: give labelled data" in capsys.readouterr().err
    assert not out.exists()
    np.savez(tmp_path / "labelled.npz", x=images[:, 0], y=np.zeros(120, dtype=np.int64))
    assert main([*base, "--dataset", str(tmp_path / "labelled.npz"), "--out", str(out), "--normal-classes", "7"]) == 2
    assert "matches no item" in capsys.readouterr().err
    assert not out.exists()


def test_a_variant_measures_more_than_the_study(tmp_path: Path) -> None:
    study = tmp_path / "study.toml"
    study.write_text(
        '[data]\ndataset = "x.npz"\n[evaluate]\nk = 10\n'
        '[[variants]]\nname = "plain"\n'
        '[[variants]]\nname = "scored"\n"train.beta" = 2.0\n"evaluate.quality" = true\n"evaluate.k" = 50\n'
        '[grid]\n"train.seed" = [0, 1]\n'
    )
    runs = {run.name: run for run in read_study(study).runs}
    plain = runs["plain,seed=0"].evaluate
    assert plain is not None and (plain["k"], plain["quality"]) == (10, False)
    assert runs["scored,seed=1"].evaluate is not None
    assert (runs["scored,seed=1"].evaluate["k"], runs["scored,seed=1"].evaluate["quality"]) == (50, True)
    assert "evaluate.k" not in runs["scored,seed=1"].values and runs["scored,seed=1"].config.train.beta == 2.0
