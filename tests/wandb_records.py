"""Reading back what W&B wrote offline (a run's .wandb file), for the tests: the file is W&B's
LevelDB-style log of protobuf `Record`s (a 7-byte header, then 32 KiB blocks of chunks, each with
a 7-byte header: checksum, length, type), and wandb 0.31 ships no reader of its own."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
FILE_HEADER = 7  # b":W&B", a 2-byte magic, a version byte
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    found, pieces, at = [], b"", FILE_HEADER
    while at + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - at % BLOCK
        if left_in_block < CHUNK_HEADER:  # the block's tail is padding
            at += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[at : at + CHUNK_HEADER])
        chunk = data[at + CHUNK_HEADER : at + CHUNK_HEADER + length]
        at += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        pieces = chunk if kind in (FULL, FIRST) else pieces + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            found.append(record)
    return found


def history(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """Every logged key -> [(step, value)], in order."""
    import json

    out: dict[str, list[tuple[int, Any]]] = {}
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
        step = int(json.loads(items.get("_step", "0")))
        for key, value in items.items():
            if not key.startswith("_"):
                out.setdefault(key, []).append((step, json.loads(value)))
    return out


def of_kind(path: Path, kind: str) -> list[Any]:
    return [getattr(r, kind) for r in records(path) if r.WhichOneof("record_type") == kind]
