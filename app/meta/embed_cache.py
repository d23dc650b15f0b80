"""Moved to `app.ml.embedding_cache` (the one disk cache); this name stays for bench/ scripts that import it."""

from app.ml.embedding_cache import embed_cached

__all__ = ["embed_cached"]
