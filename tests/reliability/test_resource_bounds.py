"""Resource bounds: the in-process head cache is bounded in count and bytes; a maximum-size request stays
within a memory bound (README, "Reliability"; measured at default limits by `bench/memory_bound.py`); the
allocator and oneDNN settings `fewshot serve` applies (each checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from app.config import Settings
from app.main import create_app
from app.ml.head import TenantHead
from app.services.model_cache import CachedHead, HeadCache, head_nbytes
from app.serving import bound_onednn_cache, start_heap_trimmer, tune_malloc
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


def run_in_fresh_process(body: str) -> None:
    """Run `body` (plain asserts) in a new interpreter, so its allocator, thread and environment changes stay
    out of the suite's process; `Settings`, `tune_malloc`, `start_heap_trimmer`, `bound_onednn_cache` in scope."""
    names = (Settings, tune_malloc, start_heap_trimmer, bound_onednn_cache)
    prelude = ["import os, platform, time", *(f"from {f.__module__} import {f.__name__}" for f in names)]
    prelude.append(f"JEMALLOC = {JEMALLOC!r}")
    code = "\n".join(prelude) + "\n" + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_serve_fixes_the_glibc_mmap_threshold() -> None:
    """`fewshot serve` stops glibc's adaptive mmap threshold from fragmenting the heap (unbounded RSS growth
    under varying tensor shapes), unless disabled or another allocator/env var decides."""
    run_in_fresh_process(
        """
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        os.environ.pop("LD_PRELOAD", None)
        fixed = Settings(malloc_mmap_threshold_kb=128, _env_file=None)
        assert tune_malloc(fixed) is (platform.libc_ver()[0] == "glibc")
        assert tune_malloc(Settings(_env_file=None)) is False  # default: glibc's adaptive threshold + trimming
        os.environ["LD_PRELOAD"] = JEMALLOC
        assert tune_malloc(fixed) is False
        """
    )


def test_serve_trims_the_glibc_heap_periodically() -> None:
    """By default `fewshot serve` keeps glibc's fast adaptive heap and returns its free pages every second
    (a soak grew RSS 18 % in 150 s without trimming); off with interval 0 or another allocator preloaded."""
    run_in_fresh_process(
        """
        os.environ.pop("LD_PRELOAD", None)
        thread = start_heap_trimmer(Settings(malloc_trim_interval_s=0.01, _env_file=None))
        if platform.libc_ver()[0] == "glibc":
            assert thread is not None and thread.daemon
            time.sleep(0.05)
            assert thread.is_alive()  # trimmed a few times without failing
        assert start_heap_trimmer(Settings(malloc_trim_interval_s=0, _env_file=None)) is None
        os.environ["LD_PRELOAD"] = JEMALLOC
        assert start_heap_trimmer(Settings(_env_file=None)) is None
        """
    )


def test_serve_caps_the_onednn_primitive_cache() -> None:
    """Every batch shape caches a oneDNN primitive (bf16 ones hold weight copies): `fewshot serve` caps them,
    unless the env var already decides or the setting is 0."""
    run_in_fresh_process(
        """
        os.environ.pop("ONEDNN_PRIMITIVE_CACHE_CAPACITY", None)
        assert bound_onednn_cache(Settings(onednn_cache_capacity=0, _env_file=None)) is False
        assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ
        assert bound_onednn_cache(Settings(_env_file=None)) is True
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "64"
        assert bound_onednn_cache(Settings(_env_file=None)) is False
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
        """
    )
