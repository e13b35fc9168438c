"""Download a file with a progress bar, a SHA-256 check and an atomic write.

The bytes stream into a temporary file beside the target; only when the checksum matches is it
renamed into place, so an interrupted or corrupted download never leaves a partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from vaekit.atomic import atomic_path
from vaekit.errors import VaekitError
from vaekit.progress import progress_bar

CHUNK_BYTES = 1 << 16


def download(url: str, target: Path, sha256: str, timeout_s: float = 30.0, progress: bool = True) -> None:
    """Fetch `url` into `target`, verifying `sha256`. Raises VaekitError on any failure."""
    digest = hashlib.sha256()
    try:
        with atomic_path(target, suffix=".part") as tmp:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with progress_bar(
                    progress, total=total, unit="B", unit_scale=True, desc=target.name, leave=False
                ) as bar:
                    for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if total is not None and received != total:
                raise VaekitError(
                    f"download of {url} was cut off after {received} of {total} bytes; nothing was kept, "
                    "run the command again"
                )
            if digest.hexdigest() != sha256:
                raise VaekitError(
                    f"{url} downloaded with SHA-256 {digest.hexdigest()}, expected {sha256}: "
                    "the mirror served a different file; nothing was kept"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise VaekitError(f"download of {url} failed ({reason})") from None
