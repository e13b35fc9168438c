"""Tables and vectors: reading CSV and 2-D arrays, what is refused and why, the standardisation
fitted on the training split, and the CLI on a real table (scikit-learn's breast-cancer set)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.config import DataConfig
from vaekit.data import load_dataset
from vaekit.data.arrays import is_table_source
from vaekit.data.columns import TableSchema
from vaekit.data.tables import Scaling, fit_scaling, read_csv_table
from vaekit.data.transforms import standardise, to_user_units
from vaekit.errors import VaekitError
from vaekit.presets import resolve
from vaekit.viz.grid import BAR_HEIGHT, feature_bars


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def breast_cancer_csv(folder: Path) -> Path:
    sklearn = pytest.importorskip("sklearn.datasets")
    data = sklearn.load_breast_cancer()
    rows: list[list[object]] = [[*data.feature_names, "diagnosis"]]
    rows += [[*(f"{v:g}" for v in x), data.target_names[t]] for x, t in zip(data.data, data.target, strict=True)]
    return write_csv(folder / "breast_cancer.csv", rows)


def test_a_csv_with_a_header_and_text_labels(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        [["a", "b", "kind"], ["1", "2.5", "cat"], ["", "", ""], ["3", "-1e2", "dog"], ["4", "0", "cat"]],
    )
    table = read_csv_table(path, label_column="kind")
    assert table.columns == ("a", "b")
    np.testing.assert_array_equal(table.features, np.array([[1, 2.5], [3, -100], [4, 0]], dtype=np.float32))
    assert table.class_names == ("cat", "dog") and table.labels is not None
    assert table.labels.tolist() == [0, 1, 0]
    headless = read_csv_table(write_csv(tmp_path / "h.csv", [["1", "2"], ["3", "5"], ["4", "1"]]))
    assert headless.columns == ("x0", "x1") and headless.labels is None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["a", "b"], ["1", "2"], ["3"], ["4", "5"]], "line 3 has 1 fields where the header has 2"),
        ([["a", "b"], ["1", ""], ["3", " "], ["4", "nan"]], "column 'b' is empty in every row: drop it"),
        ([["a", "b"], ["1", "2"], ["inf", "1"], ["4", "5"]], "line 3, column 'a' is inf: give a finite number"),
        ([["a", "a"], ["1", "2"], ["3", "1"], ["4", "5"]], "names column 'a' twice"),
        ([["a", "b"], ["1", "7"], ["3", "7"], ["4", "7"]], "column 'b' is 7 in every row"),
        ([["a", "c"], ["1", "x"], ["3", "x"], ["4", ""]], "column 'c' is 'x' in every row"),
        ([["a", "b"], ["1", "2"]], "1 row"),
        ([], "empty"),
    ],
)
def test_bad_tables_name_the_line_and_column(tmp_path: Path, rows: list[list[str]], message: str) -> None:
    with pytest.raises(VaekitError, match=message.replace("(", r"\(")):
        read_csv_table(write_csv(tmp_path / "bad.csv", rows))


def test_a_2d_array_is_a_table_and_the_header_alone_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.normal(size=(40, 3)))
    np.savez(tmp_path / "v.npz", x=rng.normal(size=(40, 3)), y=np.arange(40) % 2, columns=np.array(["p", "q", "r"]))
    np.save(tmp_path / "img.npy", rng.integers(0, 255, size=(40, 5, 5)).astype(np.uint8))
    assert is_table_source(str(tmp_path / "v.npy")) and is_table_source(str(tmp_path / "v.npz"))
    assert not is_table_source(str(tmp_path / "img.npy"))
    splits = load_dataset(DataConfig(dataset=str(tmp_path / "v.npz")))
    assert splits.is_table and splits.shape == (1, 1, 3) and splits.columns == ("p", "q", "r")
    assert splits.train.labels is not None
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40
    assert resolve(flags={"data": {"dataset": str(tmp_path / "v.npy")}}).preset == "table"
    assert resolve(flags={"data": {"dataset": str(tmp_path / "img.npy")}}).preset is None


def test_standardisation_round_trips_and_uses_the_training_split_only() -> None:
    rng = np.random.default_rng(1)
    train = (rng.normal(size=(500, 1, 1, 4)) * [3.0, 0.1, 10.0, 1.0] + [5.0, -2.0, 100.0, 0.0]).astype(np.float32)
    scaling = fit_scaling(train, TableSchema.numeric(("a", "b", "c", "d")))
    np.testing.assert_allclose(scaling.mean, train.reshape(500, 4).mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaling.std, train.reshape(500, 4).std(0), rtol=1e-5)
    data = DataConfig(feature_mean=scaling.mean, feature_std=scaling.std)
    x = torch.from_numpy(train)
    z = standardise(x, data)
    assert torch.allclose(z.mean(0).flatten(), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False).flatten(), torch.ones(4), atol=1e-4)
    assert torch.allclose(to_user_units(z, data), x, atol=1e-4)
    identity = Scaling.identity(4)
    assert torch.equal(standardise(x, DataConfig(feature_mean=identity.mean, feature_std=identity.std)), x)


def test_feature_bars_point_up_above_the_mean_and_down_below() -> None:
    bars = feature_bars(torch.tensor([3.0, -3.0, 0.0]).reshape(1, 1, 1, 3))  # (1, 1, H, 3 * 4)
    middle = BAR_HEIGHT // 2
    up, down, flat = bars[0, 0, :, 0], bars[0, 0, :, 4], bars[0, 0, :, 8]
    assert up[:middle].min() == 1.0 and up[middle + 1 :].max() == 0.0
    assert down[middle + 1 :].min() == 1.0 and down[:middle].max() == 0.0
    assert flat.sum() == 1.0  # only the zero line itself
    assert bars[0, 0, :, 3].max() == 0.0  # the gap after a bar


@pytest.mark.slow
def test_the_cli_trains_evaluates_samples_and_serves_a_real_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.loading import load_run
    from vaekit.serve.explorer import LatentExplorer

    table = breast_cancer_csv(tmp_path)
    run = tmp_path / "run"
    common = ["--label-column", "diagnosis", "--epochs", "3", "--quiet"]
    assert main(["train", "--dataset", str(table), *common, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "table" and config["likelihood"]["name"] == "mixed"
    # the stored standardisation is the training split's, in the table's own units
    loaded = load_run(run)
    splits = loaded.load_data()
    train = splits.train.array.reshape(len(splits.train), -1)
    np.testing.assert_allclose(config["data"]["feature_mean"], train.mean(0), rtol=1e-4)
    assert config["data"]["feature_names"][0] == "mean radius" and len(config["data"]["feature_names"]) == 30
    summary = json.loads((run / "summary.json").read_text())
    assert summary["units"] == "nats per item" and "test_bits_per_dim" not in summary
    assert not any((run / "images").glob("*.png"))  # rows are not pictures

    assert main(["evaluate", "--run", str(run), "--k", "20"]) == 0
    out = capsys.readouterr().out
    assert "nats/item" in out and "57 items" in out
    result = json.loads((run / "eval.json").read_text())
    assert result["figure"] == "density" and result["quality"] is None

    samples = tmp_path / "samples.csv"
    assert main(["sample", "--run", str(run), "-n", "5", "--out", str(samples)]) == 0
    rows = list(csv.reader(samples.open()))
    assert rows[0] == config["data"]["feature_names"] and len(rows) == 6
    values = np.array(rows[1:], dtype=float)
    # in the table's units: 'mean area' is in the hundreds, 'mean smoothness' below 1
    assert values[:, 3].mean() > 100 and values[:, 4].mean() < 1
    assert main(["sample", "--run", str(run), "--out", str(tmp_path / "s.png")]) == 2
    assert "must end in .csv or .npy" in capsys.readouterr().err

    explorer = LatentExplorer(loaded, splits)
    decoded = explorer.decode([0.0] * loaded.model.latent_dim)
    assert decoded["image"].startswith("data:image/png") and set(decoded["values"]) == set(rows[0])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--binarize"], "apply to images only"),
        (["--architecture", "conv"], "rows are vectors, not images"),
        (["--likelihood", "bernoulli"], "needs 0/1 columns"),
        (["--likelihood", "logistic", "--pixel-range", "symmetric"], "apply to images only"),
        (["--likelihood", "continuous-bernoulli"], "a table takes --likelihood bernoulli or gaussian"),
    ],
)
def test_settings_for_images_are_refused_on_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.normal(size=(60, 4)))
    code = main(["train", "--dataset", str(tmp_path / "v.npy"), "--epochs", "1", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_binary_columns_train_under_a_bernoulli_without_scaling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "b.npy", (rng.random((80, 6)) < 0.3).astype(np.float32))
    run = tmp_path / "r"
    flags = ["--likelihood", "bernoulli", "--epochs", "1", "--quiet", "--out", str(run)]
    assert main(["train", "--dataset", str(tmp_path / "b.npy"), *flags]) == 0
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["feature_mean"] == [0.0] * 6 and data["feature_std"] == [1.0] * 6
    assert json.loads((run / "summary.json").read_text())["test_figure"] == "likelihood"
