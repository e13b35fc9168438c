"""`vaekit encode` and `TrainedRun.encode`: the codes written equal the model's own posterior on
the same items, in order, with their labels; two layers give z1 and z2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from vaekit.cli import main
from vaekit.loading import TrainedRun, load_run
from vaekit.training.api import fit

FAST = {"epochs": 1, "batch_size": 32, "hidden_sizes": (32,), "latent_dim": 3}


@pytest.fixture(scope="module", params=[1, 2], ids=["one-layer", "ladder"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedRun, Path]:
    images, labels = blob_images(150, side=12)
    root = tmp_path_factory.mktemp("encode")
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    layers = {"stochastic_layers": 2, "top_latent_dim": 2} if request.param == 2 else {}
    fit(images, labels, out=root / "run", **FAST, **layers)  # type: ignore[arg-type]
    return load_run(root / "run"), root


def test_the_written_codes_are_the_model_s_posterior(
    trained: tuple[TrainedRun, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, root = trained
    out = root / "codes.npz"
    assert main(["encode", "--run", str(run.path), "--out", str(out), "--force"]) == 0
    codes = np.load(out)
    test = run.load_data().test
    assert codes["index"].tolist() == list(range(len(test)))
    assert test.labels is not None and codes["label"].tolist() == test.labels.tolist()
    x = run.prepare(test.array)
    with torch.no_grad():
        posterior = run.model.encode(x)
    if "z2_mean" in codes.files:
        np.testing.assert_allclose(codes["z2_mean"], posterior.mu.numpy(), atol=1e-6)
        np.testing.assert_allclose(codes["z2_std"], posterior.std.numpy(), atol=1e-6)
        with torch.no_grad():
            bottom = run.model.bottom_means(x)  # type: ignore[attr-defined]
        np.testing.assert_allclose(codes["z1_mean"], bottom.numpy(), atol=1e-6)
        assert codes["z1_std"].shape == (len(test), 3) and (codes["z1_std"] > 0).all()
    else:
        np.testing.assert_allclose(codes["z_mean"], posterior.mu.numpy(), atol=1e-6)
        np.testing.assert_allclose(codes["z_std"], posterior.std.numpy(), atol=1e-6)
    # the same from Python, on data as the user holds it (floats in [0, 1], (N, H, W))
    again = run.encode(torch.from_numpy(test.array[:, 0]).float() / 255.0)
    first_name = next(iter(again.arrays()))
    np.testing.assert_allclose(again.arrays()[first_name], codes[first_name], atol=1e-6)
    capsys.readouterr()


def test_a_dataset_is_encoded_whole_and_in_order_and_csv_matches(
    trained: tuple[TrainedRun, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, root = trained
    out = root / "all.csv"
    command = ["encode", "--run", str(run.path), "--dataset", str(root / "blobs.npz"), "--out", str(out), "--force"]
    assert main(command) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["index", "label", rows[0][2]] and len(rows) == 151
    means = np.array([[float(v) for v in row[2 : 2 + run.model.latent_dim]] for row in rows[1:]])
    images = np.load(root / "blobs.npz")["x"][:, None]  # (N, 1, 12, 12)
    expected = run.encode(images).mean
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
    capsys.readouterr()


def test_bad_encode_requests_are_one_line(trained: tuple[TrainedRun, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, root = trained
    np.save(root / "wrong.npy", np.zeros((5, 7, 7), dtype=np.uint8))
    for extra, message in (
        (["--dataset", str(root / "wrong.npy"), "--out", str(root / "w.npz")], "this run takes (1, 12, 12)"),
        (["--out", str(root / "codes.txt")], "must end in .npz or .csv"),
    ):
        assert main(["encode", "--run", str(run.path), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
