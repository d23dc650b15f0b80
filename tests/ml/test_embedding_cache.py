"""The one key recipe, the in-memory LRU (scoped keys, eviction) and the disk cache."""

from __future__ import annotations

import torch

from app.ml.embedding_cache import CachedEmbedder, DiskCache, EmbeddingLRU, cache_key


class CountingEmbedder:
    """Deterministic fake encoder: a text's embedding is its length and first character; counts texts seen."""

    fingerprint = "counting"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts) -> torch.Tensor:
        self.seen += list(texts)
        return torch.tensor([[float(len(t)), float(ord(t[0]))] for t in texts])


def test_key_parts_cannot_run_into_each_other() -> None:
    assert cache_key("a", "b\x1fc") != cache_key("a\x1fb", "c")
    assert cache_key("ab", "") != cache_key("a", "b")
    assert cache_key("x", "y") == cache_key("x", "y")


def test_lru_reuses_rows_and_counts_only_new_distinct_texts() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(10)
    first, n_first = cache.embed(["aa", "b", "aa"], encoder.embed)
    again, n_again = cache.embed(["b", "ccc"], encoder.embed)
    assert (n_first, n_again) == (2, 1)
    assert encoder.seen == ["aa", "b", "ccc"]
    torch.testing.assert_close(first[0], first[2])
    torch.testing.assert_close(again[0], first[1])


def test_scopes_do_not_share_entries() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(10)
    cache.embed(["same text"], encoder.embed, scope="tenant-a")
    _, computed = cache.embed(["same text"], encoder.embed, scope="tenant-b")
    assert computed == 1 and encoder.seen == ["same text", "same text"]


def test_lru_evicts_the_least_recently_used() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(2)
    cache.embed(["a", "b"], encoder.embed)
    cache.embed(["a"], encoder.embed)  # "a" is now the most recent
    cache.embed(["c"], encoder.embed)  # evicts "b"
    assert len(cache) == 2
    assert cache.embed(["a"], encoder.embed)[1] == 0 and cache.embed(["b"], encoder.embed)[1] == 1


def test_zero_entries_keeps_nothing() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(0)
    cache.embed(["a"], encoder.embed)
    assert cache.embed(["a"], encoder.embed)[1] == 1 and len(cache) == 0


def test_cached_embedder_keeps_the_base_fingerprint_and_values() -> None:
    base = CountingEmbedder()
    cached = CachedEmbedder(base, EmbeddingLRU(4), scope="t")
    torch.testing.assert_close(cached.embed(["hi", "yo"]), CountingEmbedder().embed(["hi", "yo"]))
    cached.embed(["hi"])
    assert cached.fingerprint == "counting" and base.seen == ["hi", "yo"]


def test_disk_cache_computes_once(tmp_path) -> None:
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"x": torch.arange(3.0)}

    disk = DiskCache(tmp_path, prefix="p-")
    first = disk.tensors(["enc", "text"], compute)
    second = DiskCache(tmp_path, prefix="p-").tensors(["enc", "text"], compute)
    assert len(calls) == 1 and torch.equal(first["x"], second["x"])
    assert [p.name for p in tmp_path.iterdir()] == [f"p-{cache_key('enc', 'text')}.safetensors"]
    DiskCache(None).tensors(["enc", "text"], compute)
    assert len(calls) == 2  # no folder: nothing cached


def test_forget_drops_one_scope_and_keeps_the_others() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(10)
    cache.embed(["a", "b"], encoder.embed, scope="t")
    cache.embed(["a"], encoder.embed, scope="u")
    cache.forget("t")
    cache.forget("nobody")
    assert len(cache) == 1
    assert cache.embed(["a", "b"], encoder.embed, scope="t")[1] == 2
    assert cache.embed(["a"], encoder.embed, scope="u")[1] == 0


def test_forget_and_eviction_keep_the_bound_and_each_other_consistent() -> None:
    encoder, cache = CountingEmbedder(), EmbeddingLRU(3)
    cache.embed(["a", "b"], encoder.embed, scope="t")
    cache.embed(["c", "d"], encoder.embed, scope="u")  # evicts t's "a"
    cache.forget("t")  # only t's "b" was left
    assert len(cache) == 2
    cache.embed(["e", "f"], encoder.embed, scope="t")  # evicts u's "c"
    assert len(cache) == 3
    cache.forget("u")
    assert len(cache) == 2 and cache.embed(["d"], encoder.embed, scope="u")[1] == 1
    cache.forget("t")
    cache.forget("u")
    assert len(cache) == 0
    assert cache.embed(["e", "f"], encoder.embed, scope="t")[1] == 2
