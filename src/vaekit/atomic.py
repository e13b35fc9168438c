"""Crash-safe file writes: write to a temporary file beside the target, then rename.

A rename within one directory is atomic on POSIX, so a reader (or a crash) sees either the old
file or the new one, never a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from vaekit.errors import VaekitError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and ending in .tmp, so that leftovers of a killed process are easy to find and sweep.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{suffix}.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give what open() would
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_with(target: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Atomically write `target` by calling `write` on an open binary file, then fsync."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    write_with(target, lambda handle: handle.write(data))


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(target: str | os.PathLike[str], line: str) -> None:
    """Append one line by rewriting the file atomically, so a crash never leaves half a line.

    Files appended to here (metrics.jsonl) hold one line per epoch, so rewriting is cheap.
    """
    target = Path(target)
    old = target.read_bytes() if target.exists() else b""
    write_bytes(target, old + line.rstrip("\n").encode("utf-8") + b"\n")


def read_json(path: str | os.PathLike[str], hint: str = "") -> Any:
    """A JSON file vaekit wrote, or one line saying it is damaged (and `hint`: what to do)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise VaekitError(f"{path} is damaged: not valid JSON ({exc.msg}, line {exc.lineno}){hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VaekitError(f"{path} cannot be read ({exc}){hint}") from None


def read_json_lines(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines file vaekit appends to. A last line cut short (a process killed
    while appending) is left out; a damaged line before it is one line of error."""
    lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise VaekitError(f"{path} is damaged: line {number} is not valid JSON") from None
    return records
