"""Heavy endpoints (/adapt, /tenants/{id}/evaluate, /tenants/{id}/suggest): bounded, fair, and stopped with their
client.

Each heavy request runs in a worker thread as bulk `Work` of its tenant (`app.ml.work`), so its encoder passes
queue behind /predict's and take turns with other tenants' (`app.ml.batching`). At most `slots` run at once and at
most `per_tenant` of one tenant; the rest wait their turn on the event loop, holding no thread, in arrival order, so
a tenant flooding heavy requests holds at most `per_tenant` of the slots. Beyond `queue_per_tenant` waiting, a
tenant gets 429 `tenant_busy`. When the client disconnects, the work is cancelled: its queued encoder chunks are
dropped and cross-validation stops at its next fold, and the request ends as 499.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from anyio import to_thread
from starlette.requests import Request

from app.ml.work import Priority, Work, working_for
from app.services.errors import ServiceError

T = TypeVar("T")
RETRY_AFTER_S = 1


class HeavyWork:
    """Admission, priority and cancellation of heavy requests (one per process)."""

    def __init__(self, slots: int, per_tenant: int, queue_per_tenant: int) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._per_tenant = per_tenant
        self._queue_per_tenant = queue_per_tenant
        self._tenants: dict[str, asyncio.Semaphore] = {}
        self._in_flight: dict[str, int] = {}  # a tenant's heavy requests, running or waiting

    async def run(self, request: Request, tenant_id: str, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker thread as `tenant_id`'s bulk work, once the tenant and the process have a turn;
        cancelled when the client disconnects."""
        in_flight = self._in_flight.get(tenant_id, 0)
        if in_flight >= self._per_tenant + self._queue_per_tenant:
            raise ServiceError(
                429,
                "tenant_busy",
                f"tenant {tenant_id!r} already has {in_flight} heavy requests running or waiting; retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        tenant = self._tenants.setdefault(tenant_id, asyncio.Semaphore(self._per_tenant))
        self._in_flight[tenant_id] = in_flight + 1
        try:
            async with tenant, self._slots:
                return await _cancellable(request, Work(tenant_id, Priority.BULK), fn, *args)
        finally:
            self._in_flight[tenant_id] -= 1
            if not self._in_flight[tenant_id]:
                del self._in_flight[tenant_id]
                del self._tenants[tenant_id]


async def _cancellable(request: Request, work: Work, fn: Callable[..., T], *args: object) -> T:
    """Run `fn` under `work` in a worker thread; cancel the work if the client disconnects meanwhile (the thread
    then stops at its next check, and its `WorkCancelled` ends the request)."""
    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(lambda done: done.cancelled() or done.exception() or work.cancel())

    def run() -> T:  # anyio runs it in a copy of this context
        with working_for(work):
            return fn(*args)

    try:
        return await to_thread.run_sync(run)
    finally:
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client has disconnected (the body has been read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
