"""Process-wide allocator and oneDNN settings for `fewshot serve` (called by the CLI before the model loads)."""

from __future__ import annotations

import ctypes
import os
import threading


def _glibc() -> ctypes.CDLL | None:
    """glibc, when it is the allocator that manages this process's heap (not with jemalloc/tcmalloc preloaded)."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preloaded or "tcmalloc" in preloaded:
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def start_heap_trimmer(interval_s: float, stop: threading.Event | None = None) -> threading.Thread | None:
    """Every `interval_s`, hand glibc's free heap pages back to the OS (`malloc_trim(0)`).

    With glibc's own adaptive mmap threshold, activation buffers stay in the heap (no page faults per
    tensor) but their varying shapes fragment it and RSS creeps up; trimming returns the free pages while
    allocation keeps the fast path. No-op without glibc, when jemalloc/tcmalloc is preloaded, or with an
    interval of 0. Returns the daemon thread, which ends once `stop` is set.
    """
    if not interval_s or (libc := _glibc()) is None or (malloc_trim := getattr(libc, "malloc_trim", None)) is None:
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    stopped = stop or threading.Event()

    def trim_until_stopped() -> None:
        while not stopped.wait(interval_s):
            malloc_trim(0)  # ctypes releases the GIL for the call

    thread = threading.Thread(target=trim_until_stopped, name="heap-trimmer", daemon=True)
    thread.start()
    return thread


def bound_onednn_cache(capacity: int) -> bool:
    """Cap oneDNN's primitive cache (read when torch first runs a CPU kernel: call before loading the model).

    Every (batch, length) shape gets its own cached primitive, and bf16 primitives keep reordered weight
    copies: with the default capacity (1024) a bf16 server's RSS climbed past 1.3 GB within a minute of
    varied batches; with 16 it levelled off near 0.95 GB at ~3 % fewer passes (`bench/results/load.json`).
    An explicit `ONEDNN_PRIMITIVE_CACHE_CAPACITY` wins; 0 keeps oneDNN's default. True when applied.
    """
    if not capacity or "ONEDNN_PRIMITIVE_CACHE_CAPACITY" in os.environ:
        return False
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(capacity)
    return True
