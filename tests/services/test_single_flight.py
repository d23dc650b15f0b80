"""Identical concurrent computations share one run; it stops only when every caller has gone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.ml.work import Priority, Work, WorkCancelled, current_work, working_for
from app.services.single_flight import SingleFlight


def _as(work: Work, flights: SingleFlight, compute) -> tuple[object, bool]:
    with working_for(work):
        return flights.run("key", compute)


def test_callers_that_arrive_during_a_computation_share_it() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def compute() -> int:
        runs.append(1)
        started.set()
        release.wait(5)
        return 42

    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(_as, Work("a", Priority.BULK), flights, compute)
        assert started.wait(5)
        others = [pool.submit(_as, Work("a", Priority.BULK), flights, compute) for _ in range(2)]
        while flights.callers("key") < 3:
            threading.Event().wait(0.001)
        release.set()
        assert first.result(timeout=5) == (42, False)
        assert [other.result(timeout=5) for other in others] == [(42, True), (42, True)]
    assert runs == [1] and len(flights) == 0
    assert flights.run("key", lambda: 7) == (7, False)  # a later caller computes again


def test_the_shared_run_continues_while_one_caller_remains_and_stops_when_none_does() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    started, step = threading.Event(), threading.Event()
    leader_work, follower_work = Work("a", Priority.BULK), Work("a", Priority.BULK)
    seen: list[bool] = []

    def compute() -> str:
        started.set()
        step.wait(5)
        seen.append(current_work().cancelled)  # the leader's client has left, the follower's has not
        step.clear()
        step.wait(5)
        current_work().raise_if_cancelled()
        return "done"

    with ThreadPoolExecutor(max_workers=2) as pool:
        leader = pool.submit(_as, leader_work, flights, compute)
        assert started.wait(5)
        follower = pool.submit(_as, follower_work, flights, compute)
        while len(flights._flights["key"].work._joined) < 2:
            threading.Event().wait(0.001)
        leader_work.cancel()
        step.set()
        while step.is_set():
            threading.Event().wait(0.001)
        follower_work.cancel()  # now nobody waits
        with pytest.raises(WorkCancelled):
            follower.result(timeout=5)  # a cancelled follower stops waiting at once
        step.set()
        with pytest.raises(WorkCancelled):
            leader.result(timeout=5)
    assert seen == [False]
