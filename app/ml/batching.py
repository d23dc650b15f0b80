"""Cross-request micro-batching: concurrent embed calls (any tenant, /adapt or /predict) share encoder passes,
and no request's size decides another's wait.

Callers block on `embed(texts)` from worker threads, or await `embed_async(texts)` on an event loop (no thread
held while a pass runs). Each request is filed under its `Work` (`app.ml.work.current_work`: owner and priority)
and cut into chunks of at most `chunk_tokens` estimated tokens (`cost`: tokens per text) and at most half a
pass, so a large request is many small pieces. One background thread assembles each pass, at most
`max_batch_texts` texts and `max_tokens` estimated tokens:
1. one chunk of bulk work (`Priority.BULK`: /adapt, /evaluate, /suggest) when any waits, so bulk work always
   progresses;
2. then interactive chunks (/predict), then more bulk, each class round-robin over owners: a tenant with many
   chunks waiting gets one per turn, and the owner served longest ago goes first.
So a one-text /predict waits for at most the pass running when it arrives and then shares the next one, whatever
other tenants have queued; a tenant's share of the encoder under contention is one chunk per turn of its class.
The encoder sorts each pass by length and cuts it into length groups, so padding stays small.

A request whose caller gave up (a cancelled await) or whose work was cancelled (its client disconnected) loses
its chunks that have not run: at most the pass already running is spent on it.
Under load (the last pass carried more than one request) a pass lingers for more requests: until requests have
arrived since the last pass and then none for `QUIET_S` (the callers the last pass answered are back), at most
`linger_ms`, or until a full pass waits. A lone request (the last pass had one) never waits. A waiting request
wakes the batcher only when it is the first or fills a pass: a wake-up per request costs the event loop a GIL
hand-over each.
A failed merged pass is retried one request at a time, so only the request that causes the failure fails:
one tenant's bad text never fails another tenant's request. Batchers of several encoders in one process hand
their passes to one shared `PassRunner` (one pass at a time, one OpenMP team) instead of running them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from app.ml.embedder import EmbedFn
from app.ml.threads import own_intra_op_threads
from app.ml.work import Priority, Work, WorkCancelled, current_work

if TYPE_CHECKING:
    from app.ml.pass_runner import PassRunner

CostFn = Callable[[str], int]
QUIET_S = 0.001  # lingering ends once requests have arrived since the last pass and none for this long


def one_per_text(_: str) -> int:
    """The default cost: every text counts as one token (passes bounded by text count alone)."""
    return 1


@dataclass(eq=False)
class _Request:
    texts: list[str]
    work: Work
    future: Future = field(default_factory=Future)
    rows: torch.Tensor | None = None  # a request in several chunks collects its rows here
    unfinished: int = 1  # chunks not yet embedded
    ended: bool = False  # answered, failed or abandoned: its remaining chunks are dropped

    @property
    def abandoned(self) -> bool:
        return self.future.cancelled() or self.work.cancelled


@dataclass(eq=False)
class _Chunk:
    request: _Request
    start: int
    stop: int
    tokens: int

    @property
    def texts(self) -> list[str]:
        request = self.request
        return request.texts if self.stop - self.start == len(request.texts) else request.texts[self.start : self.stop]


class _Queues:
    """Waiting chunks by priority, then owner (round-robin order: the owner served longest ago first)."""

    def __init__(self) -> None:
        self.by_priority: dict[Priority, OrderedDict[str, deque[_Chunk]]] = {p: OrderedDict() for p in Priority}
        self.chunks = self.texts = self.tokens = 0

    def add(self, chunk: _Chunk) -> None:
        owners = self.by_priority[chunk.request.work.priority]
        queue = owners.get(chunk.request.work.owner)
        if queue is None:
            queue = owners[chunk.request.work.owner] = deque()
        queue.append(chunk)
        self._count(chunk, 1)

    def take(self, priority: Priority, texts: int, tokens: int, first: bool, once: bool) -> list[_Chunk]:
        """Chunks of `priority` within `texts` and `tokens`, one per owner per turn (`once`: one chunk at most).
        `first`: the pass is empty, so the next chunk is taken even if it is over the budget."""
        owners, taken = self.by_priority[priority], []
        progress = True
        while progress and owners:
            progress = False
            for owner in list(owners):
                queue = owners[owner]
                chunk = queue[0]
                size = chunk.stop - chunk.start
                if not (first and not taken) and (size > texts or chunk.tokens > tokens):
                    continue
                queue.popleft()
                self._count(chunk, -1)
                owners.move_to_end(owner)  # served: last in the round-robin order
                if not queue:
                    del owners[owner]
                if chunk.request.ended:
                    progress = True
                    continue
                taken.append(chunk)
                texts, tokens, progress = texts - size, tokens - chunk.tokens, True
                if once:
                    return taken
        return taken

    def waiting(self, priority: Priority) -> bool:
        return bool(self.by_priority[priority])

    def requests(self) -> list[_Request]:
        """The distinct requests with chunks waiting."""
        seen: dict[int, _Request] = {}
        for owners in self.by_priority.values():
            for queue in owners.values():
                for chunk in queue:
                    seen.setdefault(id(chunk.request), chunk.request)
        return list(seen.values())

    def drop(self, unwanted: Callable[[_Request], bool]) -> list[_Request]:
        """Remove the chunks of requests that are `unwanted` (or ended); returns those requests, once each. A queue
        is rebuilt only when it holds such a chunk."""
        dropped: dict[int, _Request] = {}
        for owners in self.by_priority.values():
            for owner, queue in list(owners.items()):
                gone = [chunk for chunk in queue if chunk.request.ended or unwanted(chunk.request)]
                if not gone:
                    continue
                for chunk in gone:
                    dropped.setdefault(id(chunk.request), chunk.request)
                    self._count(chunk, -1)
                keep = deque(chunk for chunk in queue if id(chunk.request) not in dropped)
                if keep:
                    owners[owner] = keep
                else:
                    del owners[owner]
        return list(dropped.values())

    def _count(self, chunk: _Chunk, sign: int) -> None:
        self.chunks += sign
        self.texts += sign * (chunk.stop - chunk.start)
        self.tokens += sign * chunk.tokens


class MicroBatcher:
    """Merges concurrent `embed` calls into shared, bounded, fairly assembled encoder passes."""

    def __init__(
        self,
        embed_fn: EmbedFn,
        max_batch_texts: int = 128,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        threads: int | None = None,
        linger_ms: float = 0.0,
        runner: PassRunner | None = None,
        max_tokens: int | None = None,
        chunk_tokens: int | None = None,
        cost: CostFn = one_per_text,
    ) -> None:
        self._embed_fn = embed_fn
        self._runner = runner  # shared with other batchers: their passes run there, one at a time
        self._max_batch_texts = max_batch_texts
        self._max_tokens = max_tokens if max_tokens is not None else 1 << 62  # estimated tokens in one pass
        # a chunk is at most half a pass, so the bulk chunk a pass starts with leaves room for interactive work
        self._chunk_tokens = max(1, min(chunk_tokens or self._max_tokens, self._max_tokens // 2))
        self._chunk_texts = max(1, max_batch_texts // 2)
        self._cost = cost
        self._max_wait_s = max_wait_ms / 1000.0
        self._linger_s = linger_ms / 1000.0
        self._last_requests = 0  # requests in the last pass: the load signal for lingering
        self._arrivals = 0  # requests submitted so far
        self._last_arrival = 0.0  # monotonic time of the latest
        self.on_batch = on_batch  # called with the size of every merged encoder pass (metrics)
        self._queues = _Queues()
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
        """Embeddings for `texts`, `[len(texts), dim]`; blocks until its passes ran. Raises `WorkCancelled` when
        the current work is cancelled before they did."""
        if not texts:
            return self._embed_fn([])
        return self._submit(list(texts)).result()

    async def embed_async(self, texts: Sequence[str]) -> torch.Tensor:
        """`embed` for an event loop: awaits the shared passes without holding a thread. Cancelling the await
        withdraws the texts that have not been encoded yet."""
        if not texts:
            return self._embed_fn([])
        return await asyncio.wrap_future(self._submit(list(texts)))

    def queued(self) -> list[list[str]]:
        """The texts of each request still waiting for a pass (for tests and introspection)."""
        with self._condition:
            return [request.texts for request in self._queues.requests()]

    def _submit(self, texts: list[str]) -> Future:
        request = _Request(texts, current_work())
        chunks = self._chunks(request)
        if len(chunks) > 1:
            request.unfinished = len(chunks)
        with self._condition:
            if self._closed:
                raise RuntimeError("micro-batcher is closed")
            first = self._queues.chunks == 0
            for chunk in chunks:
                self._queues.add(chunk)
            self._arrivals += 1
            self._last_arrival = time.monotonic()
            if first or self._full():
                self._condition.notify()  # otherwise a waiting pass wakes on its own clock
        return request.future

    def _chunks(self, request: _Request) -> list[_Chunk]:
        """Cut a request into runs of at most `chunk_tokens` estimated tokens and half of `max_batch_texts` texts."""
        texts = request.texts
        if len(texts) == 1:
            return [_Chunk(request, 0, 1, self._cost(texts[0]))]
        chunks, start, tokens = [], 0, 0
        for i, text in enumerate(texts):
            cost = self._cost(text)
            if i > start and (tokens + cost > self._chunk_tokens or i - start >= self._chunk_texts):
                chunks.append(_Chunk(request, start, i, tokens))
                start, tokens = i, 0
            tokens += cost
        chunks.append(_Chunk(request, start, len(texts), tokens))
        return chunks

    def _full(self) -> bool:
        return self._queues.texts >= self._max_batch_texts or self._queues.tokens >= self._max_tokens

    def _lingering(self) -> bool:
        """Under load: the last pass served several requests."""
        return self._last_requests > 1 and self._linger_s > 0

    def _wait_s(self) -> float:
        """How long the next pass may wait for more requests: `linger` under load, else `max_wait`."""
        return max(self._linger_s, self._max_wait_s) if self._lingering() else self._max_wait_s

    def _take_batch(self) -> list[_Chunk] | None:
        """Wait for work, then for more (`_wait_s`, until a pass is full, or, lingering, until the arrivals since
        the last pass have paused for `QUIET_S`), then assemble the pass; None once closed and drained. The pass
        may be empty when every waiting caller gave up."""
        with self._condition:
            arrivals_before = self._arrivals  # those that came during the last pass are waiting already
            while not self._queues.chunks and not self._closed:
                self._condition.wait()
            if not self._queues.chunks:
                return None
            lingering = self._lingering()
            deadline = time.monotonic() + self._wait_s()
            while not self._full() and not self._closed:
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
            self._drop_abandoned()
            batch = self._assemble()
            self._last_requests = len({id(chunk.request) for chunk in batch})
            return batch

    def _assemble(self) -> list[_Chunk]:
        """One bulk chunk if any waits, then interactive chunks, then bulk ones, within the pass budget."""
        texts, tokens, batch = self._max_batch_texts, self._max_tokens, []
        plan = ((Priority.BULK, True), (Priority.INTERACTIVE, False), (Priority.BULK, False))
        for priority, once in plan:
            if not self._queues.waiting(priority):
                continue
            taken = self._queues.take(priority, texts, tokens, first=not batch, once=once)
            batch += taken
            texts -= sum(chunk.stop - chunk.start for chunk in taken)
            tokens -= sum(chunk.tokens for chunk in taken)
        return batch

    def _drop_abandoned(self) -> None:
        """End the requests nobody waits for (a cancelled await, or cancelled work) and unqueue their chunks."""
        for request in self._queues.drop(lambda request: request.abandoned):
            if not request.ended:
                self._fail(request, WorkCancelled(f"work for {request.work.owner!r} was cancelled"))

    def _run(self) -> None:
        own_intra_op_threads(self._threads)
        self._started.set()
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[_Chunk]) -> None:
        """One merged pass for the batch; when it raises, each request's chunks again on their own (fault
        isolation)."""
        texts = [text for chunk in batch for text in chunk.texts]
        try:
            embeddings = self._embed_fn(texts) if self._runner is None else self._runner.run(self._embed_fn, texts)
        except BaseException as exc:
            by_request: dict[int, list[_Chunk]] = {}
            for chunk in batch:
                by_request.setdefault(id(chunk.request), []).append(chunk)
            if len(by_request) == 1:
                self._fail(batch[0].request, exc)
                return
            for chunks in by_request.values():
                self._serve(chunks)
            return
        self.batches += 1
        self.texts += len(texts)
        if self.on_batch is not None:
            self.on_batch(len(texts))
        start = 0
        for chunk in batch:
            size = chunk.stop - chunk.start
            self._deliver(chunk, embeddings[start : start + size])
            start += size

    def _deliver(self, chunk: _Chunk, rows: torch.Tensor) -> None:
        request = chunk.request
        if request.ended:
            return
        if request.unfinished > 1 or request.rows is not None:
            if request.rows is None:
                request.rows = torch.empty(len(request.texts), rows.shape[1], dtype=rows.dtype)
            request.rows[chunk.start : chunk.stop] = rows
            request.unfinished -= 1
            if request.unfinished:
                return
            rows = request.rows
        request.ended = True
        if request.future.set_running_or_notify_cancel():
            request.future.set_result(rows)

    @staticmethod
    def _fail(request: _Request, exc: BaseException) -> None:
        request.ended = True
        if not request.future.done():
            with suppress(InvalidStateError):  # cancelled meanwhile by its caller
                request.future.set_exception(exc)

    def close(self) -> None:
        """Finish queued work and stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)
