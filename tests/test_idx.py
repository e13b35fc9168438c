import contextlib
import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit.data.idx import encode_idx, parse_idx, read_idx
from vaekit.errors import VaekitError


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_round_trip(tmp_path: Path, compress: bool, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) % 200).astype(dtype).reshape(2, 3, 4)
    raw = encode_idx(array)
    path = tmp_path / ("a.gz" if compress else "a")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)


def test_header_is_big_endian_like_mnist() -> None:
    raw = encode_idx(np.zeros((60000, 28, 28), dtype=np.uint8))
    assert raw[:16] == bytes.fromhex("00000803 0000ea60 0000001c 0000001c".replace(" ", ""))


def test_truncated_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(encode_idx(np.zeros((5, 4, 4), dtype=np.uint8))[:-7])
    with pytest.raises(VaekitError, match=r"train-images-idx3-ubyte is truncated"):
        read_idx(path)


def test_extra_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(encode_idx(np.zeros((5,), dtype=np.uint8)) + b"\0")
    with pytest.raises(VaekitError, match="longer than its header"):
        read_idx(path)


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(VaekitError, match="wrong magic number"):
        read_idx(path)


def test_damaged_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros((50, 4), dtype=np.uint8)))[:-12])
    with pytest.raises(VaekitError, match="damaged gzip"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VaekitError, match="does not exist"):
        read_idx(tmp_path / "nope")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_vaekit_errors(raw: bytes) -> None:
    with contextlib.suppress(VaekitError):
        parse_idx(raw)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=48))
def test_random_bytes_after_a_valid_header(body: bytes) -> None:
    raw = bytes([0, 0, 0x08, 2]) + (3).to_bytes(4, "big") + (4).to_bytes(4, "big") + body
    try:
        array = parse_idx(raw)
    except VaekitError:
        assert len(body) != 12
    else:
        assert array.shape == (3, 4)
