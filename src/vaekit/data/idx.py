"""Reader for the IDX format used by MNIST and Fashion-MNIST (plain or gzip-compressed).

Layout (big-endian): two zero bytes, a type code, the number of dimensions n, then n uint32
sizes, then the data. See http://yann.lecun.com/exdb/mnist/ (bottom of the page).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from vaekit.errors import VaekitError

# type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_raw(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VaekitError(f"IDX file {path} does not exist") from None
    except OSError as exc:
        raise VaekitError(f"IDX file {path} cannot be read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise VaekitError(
                f"IDX file {path} is a damaged gzip archive ({exc}): delete it and fetch it again"
            ) from None
    return raw


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array, checking the header against the data length."""
    if len(raw) < 4:
        raise VaekitError(f"IDX file {source} is too short ({len(raw)} bytes) to hold a header: it is truncated")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise VaekitError(
            f"IDX file {source} has a wrong magic number {raw[:4].hex()}: it is not an IDX file "
            "(expected 0000 then a type code and a dimension count)"
        )
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise VaekitError(f"IDX file {source} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise VaekitError(
            f"IDX file {source} is {state}: header says shape {shape} ({expected} data bytes), "
            f"found {actual}; delete it and fetch it again"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(_read_raw(path), source=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise an array as IDX bytes (used by tests and to cache converted data)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise VaekitError(f"dtype {array.dtype} cannot be stored in IDX")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).astype(np.dtype(IDX_DTYPES[codes[native]])).tobytes()
