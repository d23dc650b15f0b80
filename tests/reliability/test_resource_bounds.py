"""Resource bounds: the in-process head cache is bounded in count and bytes; a maximum-size request stays
within a memory bound (README, "Reliability"; measured at default limits by `bench/memory_bound.py`). The
allocator and oneDNN settings `fewshot serve` applies: tests/test_process_tuning.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.config import Settings
from app.ml.head import TenantHead
from app.services.model_cache import CachedHead, HeadCache, head_nbytes
from app.web.app import create_app
from harness.memory import measure
from tests.reliability.test_properties import make_head

REPO = Path(__file__).resolve().parents[2]
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def _head(n_labels: int, dim: int = 384) -> TenantHead:
    return make_head([f"l{i}" for i in range(n_labels)], torch.zeros(n_labels, dim), torch.zeros(n_labels), 10.0)


def test_head_cache_is_bounded_by_count() -> None:
    cache = HeadCache(max_entries=3)
    for i in range(10):
        cache.put(f"t{i}", CachedHead(1, "fp", _head(2)))
        assert len(cache) <= 3
    assert [cache.get(f"t{i}", 1) is not None for i in range(10)] == [False] * 7 + [True] * 3


def test_head_cache_is_bounded_by_bytes_and_evicts_least_recently_used() -> None:
    one = head_nbytes(_head(50))
    cache = HeadCache(max_entries=1000, max_bytes=3 * one + one // 2)
    for i in range(3):
        cache.put(f"t{i}", CachedHead(1, "fp", _head(50)))
    assert cache.get("t0", 1) is not None  # t0 is now the most recently used
    cache.put("t3", CachedHead(1, "fp", _head(50)))
    assert len(cache) == 3 and cache.nbytes <= 3 * one + one // 2
    assert cache.get("t1", 1) is None and cache.get("t0", 1) is not None
    cache.put("huge", CachedHead(1, "fp", _head(500)))  # larger than the whole budget: not cached at all
    assert cache.get("huge", 1) is None and len(cache) == 3
    cache.drop("t0")
    assert cache.nbytes == 2 * one


def test_head_cache_never_replaces_a_newer_version() -> None:
    cache = HeadCache(max_entries=10)
    cache.put("t", CachedHead(5, "fp", _head(2)))
    cache.put("t", CachedHead(4, "fp", _head(3)))
    cached = cache.get("t", 5)
    assert cached is not None and len(cached.head.labels) == 2 and cache.get("t", 4) is None


@pytest.mark.slow
def test_maximum_size_requests_stay_within_the_memory_bound(real_model: Any) -> None:
    """Every example and text at the character limit; the encoder batches, so memory does not scale with
    the number of texts. Bound: 400 MiB of RSS growth per request (README; measured ~330 MiB for /adapt at the
    default 5,000 x 2,000-character limits)."""
    settings = Settings(
        store="memory",
        checkpoint="none",
        inner_steps=5,
        max_examples=96,
        max_labels=16,
        max_texts=64,
        max_text_chars=2000,
        log_level="warning",
        _env_file=None,
    )
    result = measure(create_app(settings, model=real_model), settings)
    assert result["adapt_body_bytes"] > 96 * 2000
    assert result["adapt"]["growth_mb"] < 400, result
    assert result["predict"]["growth_mb"] < 400, result
