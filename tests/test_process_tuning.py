"""`fewshot serve`'s process tuning: periodic heap trimming and the oneDNN primitive cache cap."""

from __future__ import annotations

import os
import platform
import threading

import pytest

from app.process_tuning import bound_onednn_cache, start_heap_trimmer


def test_serve_trims_the_glibc_heap_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default `fewshot serve` keeps glibc's fast adaptive heap and returns its free pages every second
    (a soak grew RSS 18 % in 150 s without trimming); off with interval 0 or another allocator preloaded."""
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    stop = threading.Event()
    thread = start_heap_trimmer(0.01, stop)
    if platform.libc_ver()[0] == "glibc":
        assert thread is not None and thread.daemon
        assert not stop.wait(0.05)  # trimmed a few times without failing
        assert thread.is_alive()
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()  # nothing left running for the rest of the suite
    assert start_heap_trimmer(0) is None
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert start_heap_trimmer(1.0) is None


def test_serve_caps_the_onednn_primitive_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch shape caches a oneDNN primitive (bf16 ones hold weight copies): `fewshot serve` caps them,
    unless the env var already decides or the setting is 0."""
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    assert bound_onednn_cache(0) is False
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ
    assert bound_onednn_cache(16) is True
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "16"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    assert bound_onednn_cache(16) is False and os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
