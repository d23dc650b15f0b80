"""Cross-request micro-batching: concurrent embed calls (any tenant, /adapt or /predict) share one
encoder pass.

Callers block on `embed(texts)` from worker threads, or await `embed_async(texts)` on an event loop (no
thread held while the pass runs); one background thread collects requests for up to `max_wait_ms` (or until
`max_batch_texts` texts are waiting), runs the encoder once on all of them (the encoder sorts by length and
chunks, so padding stays small), and hands each caller its rows. A request whose caller gave up (a cancelled
await: the client went away) before its pass started is dropped, not encoded.
Under load (the last pass carried more than one request) a pass lingers for more requests: until requests have
arrived since the last pass and then none for `QUIET_S` (the callers the last pass answered are back), at most
`linger_ms`, or until `max_batch_texts` wait. Bigger passes get more texts/s out of the encoder; a lone request
(the last pass had one) never waits. A waiting request wakes the batcher only when it is the first or fills the
batch: a wake-up per request costs the event loop a GIL hand-over each.
A failed merged pass is retried one request at a time, so only the request that causes the failure fails:
one tenant's bad text never fails another tenant's request. Batchers of several encoders in one process hand
their passes to one shared `PassRunner` (one pass at a time, one OpenMP team) instead of running them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from app.ml.threads import own_intra_op_threads

if TYPE_CHECKING:
    from app.ml.pass_runner import PassRunner

EmbedFn = Callable[[list[str]], torch.Tensor]
QUIET_S = 0.001  # lingering ends once requests have arrived since the last pass and none for this long


@dataclass
class _Request:
    texts: list[str]
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Merges concurrent `embed` calls into shared encoder passes."""

    def __init__(
        self,
        embed_fn: EmbedFn,
        max_batch_texts: int = 128,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        threads: int | None = None,
        linger_ms: float = 0.0,
        runner: PassRunner | None = None,
    ) -> None:
        self._embed_fn = embed_fn
        self._runner = runner  # shared with other batchers: their passes run there, one at a time
        self._max_batch_texts = max_batch_texts
        self._max_wait_s = max_wait_ms / 1000.0
        self._linger_s = linger_ms / 1000.0
        self._last_requests = 0  # requests in the last pass: the load signal for lingering
        self._arrivals = 0  # requests submitted so far
        self._last_arrival = 0.0  # monotonic time of the latest
        self.on_batch = on_batch  # called with the size of every merged encoder pass (metrics)
        self._pending: list[_Request] = []
        self._condition = threading.Condition()
        self._closed = False
        self.batches = 0  # encoder passes run
        self.texts = 0  # texts embedded
        self._threads = threads  # intra-op threads of the encoder passes (this batcher thread's own team; no runner)
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()
        self._started.wait()  # its thread count is set before callers change the default for new threads

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings for `texts`, `[len(texts), dim]`; blocks until the shared pass ran."""
        if not texts:
            return self._embed_fn([])
        return self._submit(list(texts)).result()

    async def embed_async(self, texts: Sequence[str]) -> torch.Tensor:
        """`embed` for an event loop: awaits the shared pass without holding a thread. Cancelling the await
        before the pass starts withdraws the texts."""
        if not texts:
            return self._embed_fn([])
        return await asyncio.wrap_future(self._submit(list(texts)))

    def _submit(self, texts: list[str]) -> Future:
        request = _Request(texts)
        with self._condition:
            if self._closed:
                raise RuntimeError("micro-batcher is closed")
            self._pending.append(request)
            self._arrivals += 1
            self._last_arrival = time.monotonic()
            if len(self._pending) == 1 or self._pending_texts() >= self._max_batch_texts:
                self._condition.notify()  # otherwise a waiting pass wakes on its own clock
        return request.future

    def _pending_texts(self) -> int:
        return sum(len(request.texts) for request in self._pending)

    def _lingering(self) -> bool:
        """Under load: the last pass served several requests."""
        return self._last_requests > 1 and self._linger_s > 0

    def _wait_s(self) -> float:
        """How long the next pass may wait for more requests: `linger` under load, else `max_wait`."""
        return max(self._linger_s, self._max_wait_s) if self._lingering() else self._max_wait_s

    def _take_batch(self) -> list[_Request] | None:
        """Wait for work, then for more (`_wait_s`, until the batch is full, or, lingering, until the arrivals
        since the last pass have paused for `QUIET_S`); None once closed and drained. The batch may be empty
        when every waiting caller gave up."""
        with self._condition:
            arrivals_before = self._arrivals  # those that came during the last pass are waiting already
            while not self._pending and not self._closed:
                self._condition.wait()
            if not self._pending:
                return None
            lingering = self._lingering()
            deadline = time.monotonic() + self._wait_s()
            while self._pending_texts() < self._max_batch_texts and not self._closed:
                now = time.monotonic()
                timeout = deadline - now
                if lingering and self._arrivals > arrivals_before:
                    quiet_for = now - self._last_arrival
                    if quiet_for >= QUIET_S:
                        break
                    timeout = min(timeout, QUIET_S - quiet_for)
                if timeout <= 0:
                    break
                self._condition.wait(timeout)
            batch, size = [], 0
            while self._pending and (not batch or size + len(self._pending[0].texts) <= self._max_batch_texts):
                request = self._pending.pop(0)
                if not request.future.set_running_or_notify_cancel():
                    continue  # its caller gave up: nobody reads these rows
                batch.append(request)
                size += len(request.texts)
            self._last_requests = len(batch)
            return batch

    def _run(self) -> None:
        own_intra_op_threads(self._threads)
        self._started.set()
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        """One merged pass for the batch; when it raises, each request again on its own (fault isolation)."""
        texts = [text for request in batch for text in request.texts]
        try:
            embeddings = self._embed_fn(texts) if self._runner is None else self._runner.run(self._embed_fn, texts)
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for request in batch:
                self._serve([request])
            return
        self.batches += 1
        self.texts += len(texts)
        if self.on_batch is not None:
            self.on_batch(len(texts))
        start = 0
        for request in batch:
            request.future.set_result(embeddings[start : start + len(request.texts)])
            start += len(request.texts)

    def close(self) -> None:
        """Finish queued work and stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)
