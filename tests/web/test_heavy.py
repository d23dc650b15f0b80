"""Heavy requests: bounded per tenant and per process, bulk priority, cancelled when their client leaves."""

from __future__ import annotations

import asyncio
import threading

import pytest
from starlette.requests import Request

from app.ml.work import Priority, WorkCancelled, current_work, stop_if_cancelled
from app.services.errors import ServiceError
from app.web.heavy import HeavyWork


def _request(gone: asyncio.Event | None = None) -> Request:
    """A request whose body has been read; its next message is the disconnect, once `gone` is set."""

    async def receive() -> dict:
        await (gone or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def test_a_disconnect_cancels_the_work_running_in_its_thread() -> None:
    started = threading.Event()
    seen: list[tuple[str, Priority]] = []

    def work() -> None:
        seen.append((current_work().owner, current_work().priority))
        started.set()
        while True:
            stop_if_cancelled()
            threading.Event().wait(0.001)

    async def scenario() -> None:
        gone = asyncio.Event()
        heavy = HeavyWork(slots=2, per_tenant=1, queue_per_tenant=1)
        running = asyncio.ensure_future(heavy.run(_request(gone), "a", work))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        gone.set()
        with pytest.raises(WorkCancelled):
            await asyncio.wait_for(running, 5)

    asyncio.run(scenario())
    assert seen == [("a", Priority.BULK)]


def test_a_tenant_waits_behind_its_own_heavy_requests_and_is_refused_past_its_queue() -> None:
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def job(name: str) -> str:
        order.append(name)
        if name == "a1":
            started.set()
            release.wait(5)
        return name

    async def scenario() -> tuple[list[str], ServiceError]:
        heavy = HeavyWork(slots=2, per_tenant=1, queue_per_tenant=1)
        a1 = asyncio.ensure_future(heavy.run(_request(), "a", job, "a1"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        a2 = asyncio.ensure_future(heavy.run(_request(), "a", job, "a2"))  # waits for a1
        await asyncio.sleep(0)  # a2 takes its place in the queue
        with pytest.raises(ServiceError) as busy:
            await heavy.run(_request(), "a", job, "a3")
        b1 = await asyncio.wait_for(heavy.run(_request(), "b", job, "b1"), 5)  # another tenant is not held up
        assert not a2.done()
        release.set()
        return [b1, *await asyncio.gather(a1, a2)], busy.value

    results, busy = asyncio.run(scenario())
    assert results == ["b1", "a1", "a2"] and order == ["a1", "b1", "a2"]
    assert busy.status == 429 and busy.code == "tenant_busy" and busy.headers["Retry-After"] == "1"
