"""Weights integrity: the file hash every encoder load checks, and the error a mismatch raises."""

from __future__ import annotations

import hashlib
from pathlib import Path


class EncoderIntegrityError(RuntimeError):
    """The encoder weights on disk are not the ones we pinned."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
