"""The built-in dSprites: the factor grid in the original's order, rendered deterministically,
cached with a record written last, and read as a data set with its factors. The full set is 3 GB:
these tests render a smaller grid of the same factors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vaekit.config import DataConfig
from vaekit.data import dsprites, load_dataset, registry
from vaekit.data.dsprites import (
    FACTOR_SIZES,
    all_factors,
    factor_values,
    generate,
    load_dsprites,
    open_dsprites,
    render,
    render_sprite,
    sprite_images,
)
from vaekit.errors import VaekitError

SMALL = (3, 2, 4, 8, 8)  # every shape, 2 scales, 4 orientations, 8 x 8 positions: 1,536 images


def test_the_grid_is_every_combination_with_pos_y_fastest() -> None:
    factors = all_factors()
    assert factors.shape == (737_280, 5) and len(np.unique(factors, axis=0)) == 737_280
    assert factors[1].tolist() == [0, 0, 0, 0, 1] and factors[32].tolist() == [0, 0, 0, 1, 0]
    assert factors[-1].tolist() == [s - 1 for s in FACTOR_SIZES]
    values = factor_values()
    assert values["scale"][[0, -1]].tolist() == [0.5, 1.0] and len(values["orientation"]) == 40
    assert values["orientation"][-1] == pytest.approx(2 * np.pi)


def test_the_sliding_placement_equals_drawing_each_image_directly() -> None:
    images = sprite_images(2, 0.8, 1.1)  # (1024, 1, 64, 64): posX outer, posY inner
    patch = render_sprite(2, 0.8, 1.1)  # (33, 33), its centre at (16, 16)
    # posY q puts the centre on row 16 + q, posX p on column 16 + p: pad the patch around it.
    drawn = np.stack([np.pad(patch, ((q, 31 - q), (p, 31 - p))) for p in range(32) for q in range(32)])
    assert np.array_equal(images[:, 0], drawn.astype(np.uint8) * 255)
    assert set(np.unique(images)) == {0, 255}


def test_scale_orientation_and_shape_change_the_picture_as_they_should() -> None:
    small, large = render_sprite(0, 0.5, 0.0).sum(), render_sprite(0, 1.0, 0.0).sum()
    assert large / small == pytest.approx(4.0, rel=0.15)  # area grows with the square of the scale
    assert not np.array_equal(render_sprite(0, 1.0, 0.0), render_sprite(0, 1.0, np.pi / 4))
    assert np.array_equal(render_sprite(1, 1.0, 0.0), render_sprite(1, 1.0, 2 * np.pi))  # both ends of [0, 2π]
    heart = render_sprite(2, 1.0, 0.0)
    assert np.array_equal(heart, heart[:, ::-1])  # symmetric about its vertical axis
    assert heart[:16].sum() > heart[17:].sum()  # its lobes on top, its point below
    shapes = [render_sprite(s, 1.0, 0.3) for s in range(3)]
    assert all(not np.array_equal(shapes[a], shapes[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
    image = render(np.array([[0, 5, 0, 0, 31]]))[0, 0]  # posX 0 (left), posY 31 (bottom)
    rows, cols = np.nonzero(image)
    assert cols.mean() == pytest.approx(16, abs=0.5) and rows.mean() == pytest.approx(47, abs=0.5)


def test_generation_is_deterministic_cached_and_checked(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", SMALL)
    second = generate(tmp_path / "b", SMALL)
    record = json.loads((first / dsprites.RECORD).read_text())
    assert record["sha256"] == json.loads((second / dsprites.RECORD).read_text())["sha256"]
    found = open_dsprites(first, SMALL)
    assert found is not None and len(found) == int(np.prod(SMALL))
    assert found.factors is not None and np.array_equal(found.factors, all_factors(SMALL))
    assert found.labels is not None and np.array_equal(found.labels, found.factors[:, 0])  # the shape
    assert open_dsprites(first, (3, 2, 4, 4, 4)) is None  # another grid is another set
    # A damaged row, or a generation that never wrote its record, is generated again.
    data = first / dsprites.DATA
    raw = bytearray(data.read_bytes())
    raw[dsprites.FINGERPRINT_STRIDE * 4096 + 2000] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert open_dsprites(first, SMALL) is None
    (first / dsprites.RECORD).unlink()
    again = load_dsprites(first, SMALL)
    assert json.loads((first / dsprites.RECORD).read_text())["sha256"] == record["sha256"] and len(again) == 1536


def test_the_built_in_set_splits_with_its_factors_and_is_a_likelihood(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaekit.likelihoods.bernoulli import BernoulliLikelihood
    from vaekit.metrics.meaning import figure_meaning

    monkeypatch.setattr(registry, "DSPRITES_SIZES", SMALL)
    splits = load_dataset(DataConfig(dataset="dsprites", val_size=100), progress=False)
    assert splits.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert len(splits.test) == 153 and len(splits.val) == 100 and len(splits.train) == 1536 - 253
    assert splits.class_names == ("square", "ellipse", "heart")
    for part in (splits.train, splits.val, splits.test):
        assert part.factors is not None and part.factors.shape == (len(part), 5)
    test_images = splits.test.array
    assert np.array_equal(render(splits.test.factors[:5]), test_images[:5])  # each image is its factors'
    again = load_dataset(DataConfig(dataset="dsprites", val_size=100, split_seed=3), progress=False)
    assert np.array_equal(again.test.factors, splits.test.factors)  # the test split never moves
    meaning = figure_meaning(BernoulliLikelihood(), DataConfig(dataset="dsprites"))
    assert meaning.kind == "likelihood" and "binary image" in meaning.description


def test_an_npz_with_factors_carries_them_through_the_splits(tmp_path: Path) -> None:
    factors = all_factors(SMALL)[::4]  # 384 items
    np.savez(tmp_path / "f.npz", x=render(factors)[:, 0], factors=factors, factor_names=np.array(list("abcde")))
    splits = load_dataset(DataConfig(dataset=str(tmp_path / "f.npz"), val_size=30))
    assert splits.factor_names == tuple("abcde")
    assert splits.test.factors is not None and np.array_equal(render(splits.test.factors), splits.test.array)
    np.savez(tmp_path / "nameless.npz", x=render(factors)[:, 0], factors=factors[:, :2])
    assert load_dataset(DataConfig(dataset=str(tmp_path / "nameless.npz"))).factor_names == ("factor_0", "factor_1")


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        (np.zeros((10, 2), dtype=np.int64), r"\[factors\] has shape \(10, 2\): expected \(12, F\)"),
        (np.zeros((12, 2), dtype=np.float32), "factors are integer indices"),
    ],
)
def test_bad_factors_are_named(tmp_path: Path, factors: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((12, 8, 8), dtype=np.uint8), factors=factors)
    with pytest.raises(VaekitError, match=message):
        load_dataset(DataConfig(dataset=str(tmp_path / "bad.npz")))


def test_deepminds_file_is_recognised_streamed_and_converted_once(tmp_path: Path) -> None:
    """A file laid out like dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz: images of 0/1, the
    six latent classes with colour first, and a pickled `metadata` that is never read."""
    factors = all_factors(SMALL)[::3]  # 512 items
    classes = np.concatenate([np.zeros((len(factors), 1), dtype=np.int64), factors], axis=1)
    path = tmp_path / dsprites.ORIGINAL_NAME
    np.savez(
        path,
        imgs=(render(factors)[:, 0] // 255).astype(np.uint8),
        latents_classes=classes,
        latents_values=classes.astype(np.float64),
        metadata=np.array([{"a pickled": "dict"}], dtype=object),
    )
    splits = load_dataset(DataConfig(dataset=str(path), val_size=50))
    assert splits.factor_names == dsprites.FACTOR_NAMES and splits.class_names == dsprites.SHAPE_NAMES
    assert splits.test.factors is not None and np.array_equal(render(splits.test.factors), splits.test.array)
    converted = list((Path(os.environ["XDG_CACHE_HOME"]) / "vaekit" / "dsprites-file").iterdir())
    assert len(converted) == 1 and not converted[0].name.endswith(".partial")
    stamp = (converted[0] / "images.u8").stat().st_mtime_ns
    load_dataset(DataConfig(dataset=str(path), val_size=50))
    assert (converted[0] / "images.u8").stat().st_mtime_ns == stamp  # reused, not converted again
