"""Identical concurrent computations run once: later callers wait for the first one's result.

The first caller of a key computes, under a `SharedWork` that every caller of the key joins; the others wait for
its result, each checking its own work while it waits. The computation is cancelled only when every caller's work
is (all their clients left), and a caller whose own work is cancelled stops waiting at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.ml.work import SharedWork, current_work, working_for

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
POLL_S = 0.05  # how often a waiting caller checks whether its own client has left


@dataclass
class _Flight(Generic[V]):
    work: SharedWork
    result: Future = field(default_factory=Future)


class SingleFlight(Generic[K, V]):
    """`run(key, compute)`: one computation per key at a time, shared by everyone who asks meanwhile."""

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}
        self._lock = threading.Lock()

    def run(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """`compute()`'s value, and whether it was shared (computed for another caller)."""
        mine = current_work()
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(SharedWork(mine.owner, mine.priority))
            flight.work.join(mine)
        if leading:
            return self._lead(key, flight, compute), False
        while True:
            try:
                return flight.result.result(timeout=POLL_S), True
            except FutureTimeout:
                mine.raise_if_cancelled()

    def _lead(self, key: K, flight: _Flight[V], compute: Callable[[], V]) -> V:
        try:
            with working_for(flight.work):
                value = compute()
        except BaseException as exc:
            flight.result.set_exception(exc)
            raise
        else:
            flight.result.set_result(value)
            return value
        finally:
            with self._lock:
                del self._flights[key]

    def callers(self, key: K) -> int:
        """How many callers share `key`'s computation now (0: none runs)."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.work.callers

    def __len__(self) -> int:
        return len(self._flights)
