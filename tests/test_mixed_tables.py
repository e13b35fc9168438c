"""Tables of mixed column types with empty cells: typing and encoding, the per-column likelihood
against torch.distributions, empty cells left out of the figure, imputation that recovers a
column from the others, rows sampled on conditions, and the refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vaekit.cli import main
from vaekit.data.columns import TableSchema
from vaekit.data.tables import read_csv_table, read_parquet_table
from vaekit.errors import VaekitError
from vaekit.likelihoods.mixed import MixedLikelihood
from vaekit.loading import load_run


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def shop_table(rows: int, seed: int = 0, empty: float = 0.1) -> pd.DataFrame:
    """A table whose columns depend on each other: the shop's city sets the price level, the tier
    is a function of the city, and membership is likelier in one city; `empty` of the cells of
    price, tier and member are removed completely at random."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["Lima", "Oslo", "Pune"], size=rows, p=[0.5, 0.3, 0.2])
    level = np.select([city == "Lima", city == "Oslo"], [10.0, 30.0], 50.0)
    frame = pd.DataFrame(
        {
            "city": city,
            "price": np.round(level + rng.normal(0, 2.0, rows), 2),
            "items": rng.integers(1, 6, size=rows),
            "tier": np.select([city == "Lima", city == "Oslo"], ["low", "mid"], "high"),
            "member": np.where(rng.random(rows) < np.where(city == "Oslo", 0.8, 0.2), "true", "false"),
        }
    )
    for column in ("price", "tier", "member"):
        frame[column] = frame[column].astype(object).where(rng.random(rows) >= empty, None)
    return frame


def test_columns_are_typed_from_their_values_and_overridden_by_name(tmp_path: Path) -> None:
    rows = [["n", "x", "flag", "kind", "code"], ["1", "0.5", "true", "cat", "7"], ["2", "", "False", "dog", "8"]]
    rows += [["3", "1.5", "", "", "7"], ["4", "2.5", "TRUE", "cat", "9"]]
    path = write_csv(tmp_path / "t.csv", rows)
    table = read_csv_table(path)
    assert table.schema is not None
    assert table.schema.kinds == ("integer", "numeric", "boolean", "categorical", "integer")
    assert table.schema.categories[2:4] == (("false", "true"), ("cat", "dog"))
    assert table.features.shape == (4, 1 + 1 + 2 + 2 + 1)
    assert np.isnan(table.features[1, 1]) and np.isnan(table.features[2, 2:4]).all()  # empty cells: NaN across
    np.testing.assert_array_equal(table.features[1, 2:4], [1.0, 0.0])  # False, one-hot
    typed = read_csv_table(path, column_types=("code=categorical",))
    assert typed.schema is not None and typed.schema.kinds[4] == "categorical"
    assert typed.schema.categories[4] == ("7", "8", "9")
    with pytest.raises(VaekitError, match="is not name=kind"):
        read_csv_table(path, column_types=("code=text",))
    with pytest.raises(VaekitError, match="names 'zip', but"):
        read_csv_table(path, column_types=("zip=categorical",))


def test_encoding_round_trips_and_refuses_an_unseen_category() -> None:
    schema = TableSchema(
        ("a", "b", "c"), ("integer", "categorical", "boolean"), ((), ("x", "y", "z"), ("false", "true"))
    )
    cells = {"a": [3, 5, 7], "b": ["z", "x", "y"], "c": [True, "false", "1"]}
    encoded = schema.encode(cells, "test")
    decoded = schema.decode(encoded)
    assert decoded["a"].tolist() == [3, 5, 7] and decoded["b"].tolist() == ["z", "x", "y"]
    assert decoded["c"].tolist() == [True, False, True]
    with pytest.raises(VaekitError, match="column 'b' holds 'w', a category the run never saw"):
        schema.encode({"a": [1], "b": ["w"], "c": [True]}, "test")


def test_the_per_column_likelihood_is_torch_distributions_and_leaves_empty_cells_out() -> None:
    torch.manual_seed(0)
    schema = TableSchema(("u", "k", "v"), ("numeric", "categorical", "numeric"), ((), ("p", "q", "r"), ()))
    likelihood = MixedLikelihood(schema, sigma=0.7)
    with torch.no_grad():
        likelihood.logvar.copy_(torch.tensor([0.3, -1.2]))
    x = torch.tensor([[0.5, 0.0, 1.0, 0.0, -2.0], [1.5, 1.0, 0.0, 0.0, 0.1]]).view(2, 1, 1, 5)
    decoded = torch.randn(2, 1, 1, 5, requires_grad=True)
    by_column = likelihood.log_prob_by_column(x, decoded)
    flat = decoded.flatten(1)
    sigma = torch.exp(0.5 * likelihood.effective_logvar)
    expected = torch.stack(
        [
            torch.distributions.Normal(flat[:, 0], sigma[0]).log_prob(x.flatten(1)[:, 0]),
            torch.distributions.Categorical(logits=flat[:, 1:4]).log_prob(x.flatten(1)[:, 1:4].argmax(1)),
            torch.distributions.Normal(flat[:, 4], sigma[1]).log_prob(x.flatten(1)[:, 4]),
        ],
        dim=1,
    )
    torch.testing.assert_close(by_column, expected)
    torch.testing.assert_close(likelihood.log_prob(x, decoded), expected.sum(1))
    empty = x.clone()
    empty[0, 0, 0, 0] = float("nan")  # u missing in row 0
    empty[1, 0, 0, 1:4] = float("nan")  # k missing in row 1
    kept = likelihood.log_prob(empty, decoded)
    torch.testing.assert_close(kept, torch.stack([expected[0, 1:].sum(), expected[1, [0, 2]].sum()]))
    kept.sum().backward()
    assert decoded.grad is not None and decoded.grad[0, 0, 0, 0] == 0 and (decoded.grad[1, 0, 0, 1:4] == 0).all()
    assert torch.isfinite(decoded.grad).all()


def test_number_modes_are_a_mixture_of_gaussians_per_column() -> None:
    torch.manual_seed(1)
    modes = 3
    schema = TableSchema(("u", "k", "v"), ("numeric", "categorical", "numeric"), ((), ("p", "q", "r"), ()))
    likelihood = MixedLikelihood(schema, sigma=1.0, modes=modes)
    assert likelihood.params_per_channel == 3 * modes
    x = torch.tensor([[0.5, 0.0, 1.0, 0.0, -2.0], [1.5, 1.0, 0.0, 0.0, float("nan")]]).view(2, 1, 1, 5)
    decoded = torch.randn(2, 3 * modes, 1, 5)
    params = decoded[:, :, 0, :]  # (B, 3M, W)
    columns = []
    for position in (0, 4):
        logits, means, logvars = params[:, :, position].split(modes, dim=1)
        means = means + torch.linspace(-1.5, 1.5, modes)
        stds = torch.exp(0.5 * (logvars + 2.0 * np.log(1.0 / modes)))  # far above the floor here
        columns.append(
            torch.distributions.MixtureSameFamily(
                torch.distributions.Categorical(logits=logits), torch.distributions.Normal(means, stds)
            )
        )
    by_column = likelihood.log_prob_by_column(x, decoded)
    flat = x.flatten(1)
    torch.testing.assert_close(by_column[0, 0], columns[0].log_prob(flat[:, 0])[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(by_column[:, 2], torch.stack([columns[1].log_prob(flat[:, 4])[0], torch.tensor(0.0)]),
                               atol=1e-4, rtol=1e-4)  # fmt: skip
    category = torch.distributions.Categorical(logits=params[:, 0, 1:4]).log_prob(flat[:, 1:4].argmax(1))
    torch.testing.assert_close(by_column[:, 1], category)
    mean = likelihood.mean(decoded).flatten(1)
    assert mean.shape == (2, 5)
    torch.testing.assert_close(mean[:, 0], columns[0].mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mean[:, 1:4], torch.softmax(params[:, 0, 1:4], dim=1))
    # draws follow the mixture: their mean and variance against the mixture's own
    many = likelihood.sample(decoded[:1].expand(20000, -1, -1, -1), torch.Generator().manual_seed(0))
    drawn = many.flatten(1)[:, 4]  # v of row 0, 20,000 times
    assert abs(drawn.mean() - columns[1].mean[0]) < 0.05 * float(columns[1].stddev[0])
    assert abs(drawn.std() - columns[1].stddev[0]) < 0.05 * float(columns[1].stddev[0])


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    shop_table(1500).to_csv(root / "shop.csv", index=False)
    args = ["train", "--dataset", str(root / "shop.csv"), "--out", str(root / "run"), "--epochs", "40"]
    assert main([*args, "--batch-size", "100", "--latent-dim", "4", "--quiet"]) == 0
    return root / "run"


def test_a_mixed_table_reports_each_columns_share(shop_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((shop_run / "config.json").read_text())
    assert config["likelihood"]["name"] == "mixed" and config["data"]["column_kinds"][:2] == ["categorical", "numeric"]
    assert main(["evaluate", "--run", str(shop_run), "--k", "10"]) == 0
    assert "column tier" in capsys.readouterr().out
    result = json.loads((shop_run / "eval.json").read_text())
    shares = result["columns"]["recon_nats"]
    assert sum(shares.values()) == pytest.approx(result["elbo_recon_nats"], rel=1e-6)  # float32 sums
    assert result["columns"]["empty_cells"]["city"] == 0 and result["columns"]["empty_cells"]["tier"] > 0


def test_a_tables_card_shows_drawn_rows_and_refuses_image_pictures(shop_run: Path) -> None:
    from vaekit import pictures

    run = load_run(shop_run)
    card = run._repr_html_()
    assert "rows drawn from the model" in card and "<th>city</th>" in card and "data:image" not in card
    with pytest.raises(VaekitError, match="shows images, and this run's data is a table"):
        pictures.samples(run)
    assert pictures.marginals(run)._repr_png_()[:4] == b"\x89PNG"


def test_imputation_recovers_a_column_from_the_others(shop_run: Path, tmp_path: Path) -> None:
    run = load_run(shop_run)
    truth = shop_table(400, seed=5, empty=0.0)
    holed = truth.copy()
    rng = np.random.default_rng(1)
    gone = rng.random(len(holed)) < 0.5
    holed["tier"] = holed["tier"].where(~gone, None)
    holed["price"] = holed["price"].where(~gone[::-1], None)
    filled = run.impute(holed, k=50)
    accuracy = (filled["tier"][gone] == truth["tier"][gone]).mean()
    mode_accuracy = (truth["tier"][gone] == truth["tier"].mode()[0]).mean()
    assert accuracy > 0.9 > mode_accuracy + 0.3  # the city tells the tier; the mode does not
    error = np.abs(filled["price"][gone[::-1]].astype(float) - truth["price"][gone[::-1]]).mean()
    spread = np.abs(truth["price"] - truth["price"].mean()).mean()
    assert error < spread / 2  # the city tells the price level
    pd.testing.assert_frame_equal(filled[~gone & ~gone[::-1]], holed[~gone & ~gone[::-1]], check_dtype=False)
    draws = run.impute(holed, draws=3, k=50, seed=2)
    assert len(draws) == 3 and not draws[0]["price"].equals(draws[1]["price"])
    assert all(d["tier"].notna().all() and set(d["tier"]) <= {"low", "mid", "high"} for d in draws)


def test_a_run_with_number_modes_evaluates_imputes_and_draws_each_level(tmp_path: Path) -> None:
    shop_table(1500).to_csv(tmp_path / "shop.csv", index=False)
    args = ["train", "--dataset", str(tmp_path / "shop.csv"), "--out", str(tmp_path / "run"), "--epochs", "40"]
    assert main([*args, "--batch-size", "100", "--latent-dim", "4", "--number-modes", "3", "--quiet"]) == 0
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--k", "10", "--no-quality"]) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert np.isfinite(result["elbo_recon_nats"])
    run = load_run(tmp_path / "run")
    assert run.model.likelihood.modes == 3
    drawn = run.sample_rows(3000, seed=0, draw=True)["price"].to_numpy(dtype=float)
    near_a_level = np.min(np.abs(drawn[:, None] - np.array([10.0, 30.0, 50.0])), axis=1) < 6.0
    assert near_a_level.mean() > 0.9  # three price levels, and draws between them are rare
    truth = shop_table(300, seed=6, empty=0.0)
    holed = truth.assign(price=None)
    error = np.abs(run.impute(holed, k=50)["price"].astype(float) - truth["price"]).mean()
    assert error < np.abs(truth["price"] - truth["price"].mean()).mean() / 2  # the city tells the price level


def test_the_cli_imputes_and_samples_on_conditions(
    shop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holed = shop_table(50, seed=9)
    holed.to_csv(tmp_path / "holed.csv", index=False)
    out = tmp_path / "filled.csv"
    assert main(["impute", "--run", str(shop_run), "--dataset", str(tmp_path / "holed.csv"), "--out", str(out)]) == 0
    filled = pd.read_csv(out)
    assert filled.notna().all().all() and len(filled) == 50
    assert main(["impute", "--run", str(shop_run), "--data", str(out), "--out", str(tmp_path / "again.csv")]) == 0
    assert "nothing to impute" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again.csv"), filled)
    synth = tmp_path / "synth.csv"
    args = ["sample", "--run", str(shop_run), "-n", "300", "--draw", "--out", str(synth)]
    assert main([*args, "--where", "city=Oslo", "--where", "member=true"]) == 0
    rows = pd.read_csv(synth)
    assert len(rows) == 300 and (rows["city"] == "Oslo").all() and rows["member"].all()
    assert set(rows["tier"]) <= {"low", "mid", "high"} and (rows["items"] == rows["items"].round()).all()
    accepted = float(capsys.readouterr().out.split("--where")[1].split("%")[0].split(":")[1])
    assert 5 < accepted < 60  # Oslo and member: about 0.3 * 0.8 = 24% of the training rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "-n", "5", "--where", "city=Paris"], "has no value 'Paris'"),
        (["sample", "-n", "5", "--where", "zip=1"], "no column 'zip'"),
        (["sample", "-n", "5", "--where", "price=10"], "holds real numbers"),
        (["sample", "-n", "0"], "-n 0 is out of range"),
        (["impute", "--dataset", "MISSING_COLUMN"], "has no column 'member', which the run was trained with"),
        (["impute", "--dataset", "TEXT_IN_NUMBERS"], "column 'price' is numeric in this run, but row 0 holds 'cheap'"),
        (["impute", "--dataset", "NEW_CATEGORY"], "column 'city' holds 'Rome', a category the run never saw"),
    ],
)
def test_bad_table_input_is_one_line_and_writes_nothing(
    shop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    table = shop_table(20, seed=3)
    changed = {
        "MISSING_COLUMN": table.drop(columns=["member"]),
        "TEXT_IN_NUMBERS": table.assign(price=["cheap"] + [1.0] * 19),
        "NEW_CATEGORY": table.assign(city=["Rome"] + ["Lima"] * 19),
    }
    for name, frame in changed.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    args = [str(tmp_path / f"{a}.csv") if a in changed else a for a in args]
    out = tmp_path / "out.csv"
    assert main([args[0], "--run", str(shop_run), *args[1:], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_numbers_only_likelihood_refuses_categories_and_empty_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop_table(100).to_csv(tmp_path / "shop.csv", index=False)
    args = ["train", "--dataset", str(tmp_path / "shop.csv"), "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main([*args, "--likelihood", "gaussian"]) == 2
    assert "column 'city' is categorical, and --likelihood gaussian models numbers" in capsys.readouterr().err
    numbers = np.random.default_rng(0).normal(size=(200, 3))
    numbers[5, 1] = np.nan
    np.save(tmp_path / "holes.npy", numbers)
    args = ["train", "--dataset", str(tmp_path / "holes.npy"), "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main([*args, "--likelihood", "gaussian", "--gaussian-variance", "pixel"]) == 2
    assert "column 'x1' has empty cells" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main([*args, "--quiet"]) == 0  # the table preset's per-column likelihood takes them


def test_a_dataframe_trains_as_a_csv_file_does_and_its_run_reloads(tmp_path: Path) -> None:
    from vaekit import fit

    frame = shop_table(300, seed=4)
    run = fit(frame, out=tmp_path / "run", epochs=2, column_types={"items": "categorical"})
    assert run.config.data.column_kinds == ("categorical", "numeric", "categorical", "categorical", "boolean")
    reloaded = load_run(tmp_path / "run")
    splits = reloaded.load_data()
    assert splits.schema == run.schema and splits.train.array.shape[-1] == run.schema.width
    assert np.isnan(splits.train.array).any()  # the empty cells kept as they were given
    assert reloaded.encode(frame.head(7)).mean.shape == (7, reloaded.model.latent_dim)  # rows as a DataFrame
    filled = reloaded.impute(frame.head(20), k=5)
    assert filled.notna().all().all() and list(filled.columns) == list(frame.columns)
    with pytest.raises(VaekitError, match="leave out columns="):
        fit(frame, columns=["a", "b"], out=tmp_path / "other")


def test_the_marginals_picture_and_report_of_a_table(shop_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    assert main(["plot", "--run", str(shop_run), "all", "--out-dir", str(tmp_path / "plots")]) == 0
    drawn = {path.stem for path in (tmp_path / "plots").glob("*.png")}
    assert drawn == {"curves", "latent-map", "scores", "marginals"}  # no image grids of rows
    pixels = np.asarray(Image.open(tmp_path / "plots" / "marginals.png").convert("L"))
    assert pixels.shape[1] > 800 and pixels.std() > 5
    run = load_run(shop_run)
    rows = run.sample_rows(2000, seed=1)
    training = run.load_data().train.array.reshape(-1, run.schema.width)
    at = run.schema.slices[run.schema.index("items")].start
    low, high = np.nanmin(training[:, at]), np.nanmax(training[:, at])
    assert rows["items"].between(low, high).all()  # drawn integers kept within what training saw


def test_an_identifier_column_is_refused_with_the_fix() -> None:
    from vaekit.data.tables import table_from_frame

    rows = 50_001
    frame = pd.DataFrame({"id": [f"row{i}" for i in range(rows)], "x": np.arange(rows) % 7})
    with pytest.raises(VaekitError, match="column 'id' has 50,001 categories, more than 50,000"):
        table_from_frame(frame, "the frame")
    typed = table_from_frame(frame.assign(id=np.arange(rows)), "the frame", column_types=("x=categorical",))
    assert typed.schema is not None and typed.schema.kinds == ("integer", "categorical")


def test_a_parquet_table_trains_and_imputes_as_its_csv_would(
    shop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    frame = shop_table(60, seed=11)
    frame.to_parquet(tmp_path / "shop.parquet")
    from_parquet = read_parquet_table(tmp_path / "shop.parquet")
    frame.to_csv(tmp_path / "shop.csv", index=False)
    from_csv = read_csv_table(tmp_path / "shop.csv")
    assert from_parquet.schema == from_csv.schema
    np.testing.assert_array_equal(from_parquet.features, from_csv.features)
    out = tmp_path / "filled.csv"
    args = ["impute", "--run", str(shop_run), "--dataset", str(tmp_path / "shop.parquet"), "--out", str(out)]
    assert main(args) == 0 and pd.read_csv(out).notna().all().all()
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    args = ["train", "--dataset", str(tmp_path / "broken.parquet"), "--out", str(tmp_path / "r"), "--epochs", "1"]
    assert main(args) == 2
    assert "is not a readable Parquet file" in capsys.readouterr().err and not (tmp_path / "r").exists()
