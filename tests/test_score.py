"""`vaekit score`: per-item figures whose means are `vaekit evaluate`'s, a threshold that gives the
asked false-positive rate, and scores that single out data unlike the training data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.loading import load_run
from vaekit.metrics.scores import score_items, threshold_at_fpr
from vaekit.training.api import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(2400, side=12, seed=1)
    root = tmp_path_factory.mktemp("score")
    settings = {"epochs": 3, "batch_size": 64, "hidden_sizes": (64,), "latent_dim": 4, "val_size": 800}
    fit(images, labels, out=root / "run", **settings)  # type: ignore[arg-type]
    return root / "run"


def read_scores(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_the_score_file_averages_to_the_evaluation(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_dir.parent / "scores.csv"
    assert main(["score", "--run", str(run_dir), "--out", str(out), "--k", "20"]) == 0
    assert main(["evaluate", "--run", str(run_dir), "--k", "20", "--no-quality"]) == 0
    evaluation = json.loads((run_dir / "eval.json").read_text())
    rows = read_scores(out)
    assert len(rows) == evaluation["images"] == 240
    assert math.isclose(
        np.mean([float(r["nelbo_nats"]) for r in rows]), evaluation["elbo_cross_entropy_nats"], rel_tol=1e-6
    )
    assert math.isclose(
        np.mean([float(r["iwae_nats_k20"]) for r in rows]), evaluation["iwae_cross_entropy_nats"], rel_tol=1e-6
    )
    assert [int(r["label"]) for r in rows] == load_run(run_dir).load_data().test.labels.tolist()  # type: ignore[union-attr]
    capsys.readouterr()


def test_the_threshold_gives_the_asked_false_positive_rate(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = load_run(run_dir)
    splits = run.load_data()
    fpr = 0.1
    val_scores = score_items(run.model, splits.val.array, run.config.data, k=5).nelbo
    threshold = threshold_at_fpr(val_scores, fpr)
    flagged_val = float((val_scores > threshold).mean())
    assert fpr - 1.0 / len(val_scores) <= flagged_val <= fpr  # exact on the set it was set on, up to ties
    out = run_dir.parent / "flagged.csv"
    assert main(["score", "--run", str(run_dir), "--out", str(out), "--k", "5", "--threshold-fpr", str(fpr)]) == 0
    flagged_test = np.mean([int(r["anomalous"]) for r in read_scores(out)])
    sigma = math.sqrt(fpr * (1 - fpr) / 240)  # the test split is normal data: a binomial rate around fpr
    assert abs(flagged_test - fpr) < 3.5 * sigma
    capsys.readouterr()


def test_unfamiliar_items_score_higher(run_dir: Path) -> None:
    run = load_run(run_dir)
    normal = run.load_data().test.array
    strange = 255 - normal  # the same images, inverted: nothing like the training data
    scores_normal = score_items(run.model, normal, run.config.data, k=5)
    scores_strange = score_items(run.model, strange, run.config.data, k=5)
    for name in ("nelbo", "iwae", "recon"):
        assert np.median(scores_strange.by(name)) > np.quantile(scores_normal.by(name), 0.95), name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold-fpr", "1.5"], "must lie strictly between 0 and 1"),
        (["--threshold-fpr", "0"], "must lie strictly between 0 and 1"),
        (["--k", "0"], "--k 0 is out of range"),
    ],
)
def test_bad_score_requests_are_one_line(
    run_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = run_dir.parent / "bad.csv"
    assert main(["score", "--run", str(run_dir), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_the_report_pictures_of_scores_exist(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = run_dir.parent / "plots"
    assert main(["plot", "--run", str(run_dir), "scores", "anomalies", "--out-dir", str(out)]) == 0
    picture = Image.open(out / "anomalies.png")
    # 8 items in three rows (items, reconstructions, error maps) of 12x12 images with 2-pixel padding, scaled 2x
    assert picture.size == (2 * (8 * 14 + 2), 2 * (3 * 14 + 2))
    assert (out / "scores.png").stat().st_size > 0
    capsys.readouterr()


def test_the_bernoulli_entropy_is_the_cross_entropys_floor() -> None:
    """H(x) equals the cross-entropy at logits = logit(x), no logits give less, binary pixels have none."""
    import torch

    from vaekit.likelihoods.bernoulli import BernoulliLikelihood, bernoulli_entropy

    generator = torch.Generator().manual_seed(0)
    x = torch.rand((4, 1, 5, 5), generator=generator).clamp(0.01, 0.99)
    floor = bernoulli_entropy(x)
    at_x = -BernoulliLikelihood().log_prob(x, torch.logit(x))
    torch.testing.assert_close(floor, at_x, rtol=1e-4, atol=1e-4)
    for _ in range(5):
        logits = torch.randn((4, 1, 5, 5), generator=generator) * 3
        assert (-BernoulliLikelihood().log_prob(x, logits) >= floor - 1e-4).all()
    assert bernoulli_entropy(torch.tensor([[[[0.0, 1.0, 1.0]]]])).item() == 0.0


def test_the_excess_is_the_elbo_above_each_images_floor(run_dir: Path) -> None:
    import torch

    from vaekit.likelihoods.bernoulli import bernoulli_entropy

    run = load_run(run_dir)
    items = run.load_data().test.array
    scores = score_items(run.model, items, run.config.data, k=5)
    floor = bernoulli_entropy(torch.from_numpy(items).double() / 255.0).numpy()
    assert scores.excess is not None
    np.testing.assert_allclose(scores.excess, scores.nelbo - floor, rtol=1e-6, atol=1e-4)
    assert (scores.excess > 0).all()  # -ELBO bounds the cross-entropy, which the floor bounds


def test_the_excess_is_offered_only_for_a_bernoulli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = blob_images(120, side=8)
    run = tmp_path / "gauss"
    fit(images, labels, out=run, epochs=1, batch_size=32, latent_dim=2, likelihood="gaussian", val_size=40)
    out = tmp_path / "s.csv"
    code = main(["score", "--run", str(run), "--out", str(out), "--k", "2", "--threshold-fpr", "0.1", "--by", "excess"])
    assert code == 2 and "likelihood is Gaussian" in capsys.readouterr().err and not out.exists()
    assert main(["score", "--run", str(run), "--out", str(out), "--k", "2"]) == 0
    assert "excess_nats" not in out.read_text().splitlines()[0]


def test_the_cli_knows_every_score() -> None:
    from vaekit.cli import SCORE_NAMES
    from vaekit.metrics.scores import SCORES

    assert SCORE_NAMES == SCORES


def test_the_pictures_rank_a_bernoulli_run_by_its_excess(run_dir: Path) -> None:
    from vaekit.viz.gallery import PictureContext, _test_scores

    run = load_run(run_dir)
    ctx = PictureContext(run, run.load_data())
    ranked, name = _test_scores(ctx)
    expected = score_items(run.model, ctx.splits.test.array, run.config.data, k=1).excess
    assert name == "-ELBO - H(x)" and expected is not None
    np.testing.assert_allclose(ranked, expected[: len(ranked)], rtol=1e-6)
