"""Embed a text list once per encoder fingerprint and keep the result on disk (safetensors)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.ml.encoder import SentenceEncoder


def embed_cached(
    encoder: SentenceEncoder, texts: Sequence[str], cache_dir: Path | None, batch_size: int = 128
) -> torch.Tensor:
    """`encoder.embed(texts)`, memoised by (fingerprint, max_tokens, texts)."""
    if cache_dir is None:
        return encoder.embed(list(texts), batch_size=batch_size)
    key = hashlib.sha256(
        "\x1f".join([encoder.fingerprint, str(encoder.max_tokens), *texts]).encode("utf-8")
    ).hexdigest()[:24]
    path = cache_dir / f"{key}.safetensors"
    if path.exists():
        return load_file(str(path))["embeddings"]
    embeddings = encoder.embed(list(texts), batch_size=batch_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": embeddings.contiguous()}, str(path))
    return embeddings
