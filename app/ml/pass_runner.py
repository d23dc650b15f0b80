"""One thread that runs the encoder passes of several micro-batchers, one pass at a time, on one OpenMP team.

A server with several encoder tiers has a micro-batcher per tier. If each ran its own passes, each would own an
OpenMP team sized to every core: two passes at once oversubscribe the cores, and with more OpenMP threads than
cores libgomp sleeps at every barrier (`app/ml/threads.py`). The batchers keep their queues and merge rules; their
passes run here instead, in the order they are handed in.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import torch

from app.ml.embedder import EmbedFn
from app.ml.threads import own_intra_op_threads


class PassRunner:
    """Runs `embed_fn(texts)` calls on its own thread, one at a time, with `threads` intra-op threads."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads
        self._work: queue.SimpleQueue[tuple[EmbedFn, list[str], Future] | None] = queue.SimpleQueue()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encoder-passes", daemon=True)
        self._thread.start()
        self._started.wait()  # its thread count is set before callers change the default for new threads

    def run(self, embed_fn: EmbedFn, texts: list[str]) -> torch.Tensor:
        """`embed_fn(texts)`, computed on the runner's thread; blocks until done, raises what it raised."""
        future: Future = Future()
        self._work.put((embed_fn, texts, future))
        return future.result()

    def _run(self) -> None:
        own_intra_op_threads(self._threads)
        self._started.set()
        while (item := self._work.get()) is not None:
            embed_fn, texts, future = item
            try:
                future.set_result(embed_fn(texts))
            except BaseException as exc:  # the caller (a batcher) isolates the failure
                future.set_exception(exc)

    def close(self) -> None:
        """Stop after the passes already handed in (close the batchers that use it first)."""
        self._work.put(None)
        self._thread.join(timeout=30)
