"""Server-process limits for `fewshot serve`: what a slow or idle client can hold, and heap fragmentation.

uvicorn itself times out only idle keep-alive connections: a client that trickles its request line, headers or
body one byte at a time keeps a connection (and its request task) forever. `DeadlineH11Protocol` gives every
request a deadline: the whole request (headers and body) must arrive within `request_timeout_s` of the
connection opening or of the request's first byte on a kept-alive connection (idle kept-alive connections
close after `timeout_keep_alive_s`, as in plain uvicorn); otherwise the server answers 408 and closes.
Worker threads are never involved: the app reads the body on the event loop before a sync route runs, so a
slow client holds a connection and a coroutine, never a thread. `limit_concurrency` caps connections.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import Settings

_FINISHED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


def _timeout_response() -> bytes:
    body = json.dumps(
        {"error": {"code": "request_timeout", "message": "the request was not received in time"}}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for receiving each whole request."""

    request_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_deadline: asyncio.TimerHandle | None = None

    def _arm_request_deadline(self) -> None:
        self._disarm_request_deadline()
        self._request_deadline = self.loop.call_later(self.request_timeout_s, self._request_deadline_expired)

    def _disarm_request_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in _FINISHED:
            self._disarm_request_deadline()  # the whole request is in; the app may take its time

    def data_received(self, data: bytes) -> None:
        if self._request_deadline is None and self.conn.their_state not in _FINISHED:
            self._arm_request_deadline()  # the first bytes of the next request on a keep-alive connection
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pipelined = bool(self.conn.trailing_data[0])
        if pipelined and not self.transport.is_closing() and self.conn.their_state not in _FINISHED:
            self._arm_request_deadline()  # part of the next request arrived while this one was served

    def _request_deadline_expired(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing() or self.conn.their_state in _FINISHED:
            return
        self.logger.warning("closing a connection whose request took longer than %.1f s", self.request_timeout_s)
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            self.transport.write(_timeout_response())
        self.transport.close()


def deadline_protocol(request_timeout_s: float) -> type[DeadlineH11Protocol]:
    """A `DeadlineH11Protocol` subclass with the given request deadline (uvicorn builds one per connection)."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout_s": float(request_timeout_s)})


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    """glibc, when it is the allocator that manages this process's heap (not with jemalloc/tcmalloc preloaded)."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preloaded or "tcmalloc" in preloaded:
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_malloc(settings: Settings) -> bool:
    """Fix glibc's mmap threshold so freed tensor buffers go back to the OS (off by default, see below).

    Tensors of varying shapes (every batch has its own length) fragment glibc's heap once its adaptive mmap
    threshold has grown: a soak showed RSS climbing ~3 MiB/s without end. A fixed threshold keeps large blocks
    in mmap (returned on free), at the price of page faults on every pass; `start_heap_trimmer` is the default.
    No-op without glibc, when jemalloc/tcmalloc is preloaded, when the `MALLOC_MMAP_THRESHOLD_` env var already
    decides, or with `malloc_mmap_threshold_kb=0`. True when applied.
    """
    threshold = settings.malloc_mmap_threshold_kb * 1024
    if not threshold or "MALLOC_MMAP_THRESHOLD_" in os.environ or (libc := _glibc()) is None:
        return False
    try:
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold))
    except AttributeError:  # a libc.so.6 without mallopt
        return False


def start_heap_trimmer(settings: Settings) -> threading.Thread | None:
    """Every `malloc_trim_interval_s`, hand glibc's free heap pages back to the OS (`malloc_trim(0)`).

    With glibc's own adaptive mmap threshold, activation buffers stay in the heap (no page faults per
    tensor) but their varying shapes fragment it and RSS creeps up; trimming returns the free pages while
    allocation keeps the fast path. No-op without glibc, when jemalloc/tcmalloc is preloaded, or with an
    interval of 0. Returns the daemon thread.
    """
    interval_s = settings.malloc_trim_interval_s
    if not interval_s or (libc := _glibc()) is None or (malloc_trim := getattr(libc, "malloc_trim", None)) is None:
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]

    def trim_forever() -> None:
        while True:
            time.sleep(interval_s)
            malloc_trim(0)  # ctypes releases the GIL for the call

    thread = threading.Thread(target=trim_forever, name="heap-trimmer", daemon=True)
    thread.start()
    return thread


def bound_onednn_cache(settings: Settings) -> bool:
    """Cap oneDNN's primitive cache (read when torch first runs a CPU kernel: call before loading the model).

    Every (batch, length) shape gets its own cached primitive, and bf16 primitives keep reordered weight
    copies: with the default capacity (1024) a bf16 server's RSS climbed past 1.3 GB within a minute of
    varied batches; with 16 it levelled off near 0.95 GB at ~3 % fewer passes (`bench/results/load.json`).
    An explicit `ONEDNN_PRIMITIVE_CACHE_CAPACITY` wins. True when applied.
    """
    if not settings.onednn_cache_capacity or "ONEDNN_PRIMITIVE_CACHE_CAPACITY" in os.environ:
        return False
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(settings.onednn_cache_capacity)
    return True


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` that bound slow and idle clients."""
    return {
        "http": deadline_protocol(settings.request_timeout_s),
        "timeout_keep_alive": settings.timeout_keep_alive_s,
        "limit_concurrency": settings.limit_concurrency,
    }
