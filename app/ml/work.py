"""Who a piece of encoder work is for, how urgent it is, and whether anyone still wants it.

The service layer runs each request under a `Work` (`working_for`); the code below it reads the current one
(`current_work`) instead of threading it through every call: the micro-batcher files each text under the work's
owner (a tenant) and priority, so passes are shared fairly, and long loops (cross-validation folds) call
`stop_if_cancelled` between steps, so work whose client has gone stops within one step. The current work is a
context variable: it follows a request into the worker thread that runs it (`contextvars.copy_context`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum


class Priority(IntEnum):
    """Lower runs first: a text to classify now (`/predict`) before a batch being fitted or scored."""

    INTERACTIVE = 0
    BULK = 1


class WorkCancelled(Exception):
    """Raised inside work that nobody waits for any more (its client disconnected)."""


class Work:
    """One request's claim on shared compute: its `owner` (tenant id), its `priority` and a cancel flag."""

    __slots__ = ("_cancelled", "owner", "priority")

    def __init__(self, owner: str = "", priority: Priority = Priority.INTERACTIVE) -> None:
        self.owner = owner
        self.priority = priority
        self._cancelled = False  # set once, read by other threads: a plain attribute is enough (nobody waits on it)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise WorkCancelled(f"work for {self.owner!r} was cancelled")


class SharedWork(Work):
    """Work done once for several requests (identical reports): cancelled only when every request that joined it
    is cancelled."""

    __slots__ = ("_joined", "_lock")

    def __init__(self, owner: str = "", priority: Priority = Priority.INTERACTIVE) -> None:
        super().__init__(owner, priority)
        self._joined: list[Work] = []
        self._lock = threading.Lock()

    def join(self, work: Work) -> None:
        with self._lock:
            self._joined.append(work)

    @property
    def callers(self) -> int:
        """How many requests have joined."""
        with self._lock:
            return len(self._joined)

    @property
    def cancelled(self) -> bool:
        with self._lock:
            joined = list(self._joined)
        return super().cancelled or (bool(joined) and all(work.cancelled for work in joined))


UNOWNED = Work()  # work outside any request (meta-training, evaluation, tests): interactive, never cancelled
_current: ContextVar[Work] = ContextVar("current_work", default=UNOWNED)


def current_work() -> Work:
    """The work the calling code runs for (`UNOWNED` outside `working_for`)."""
    return _current.get()


@contextmanager
def working_for(work: Work) -> Iterator[Work]:
    """Run the block (and what it calls, in this context) as `work`."""
    token = _current.set(work)
    try:
        yield work
    finally:
        _current.reset(token)


def stop_if_cancelled() -> None:
    """Raise `WorkCancelled` when the current work was cancelled: call between steps of a long computation."""
    current_work().raise_if_cancelled()
