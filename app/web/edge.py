"""The one middleware layer: request context, body limit and access gate, in that order, as one ASGI call.

Each concern keeps its own module (`context`, `body_limit`, `access`); running them here instead of as three
nested middlewares keeps two coroutine frames and two pairs of receive/send wrappers off every request (each
await in a request resumes through every frame of the chain). Order and guarantees: the context is opened first
and closed last, an oversized body is refused before the gate reads it, and the gate answers refused requests
itself.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access.guard import AccessGuard
from app.web.body_limit import BodyLimit, BodyTooLarge
from app.web.context import RequestContexts
from app.web.gate import AccessGate


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        fastapi_app: FastAPI,
        guard: Callable[[], AccessGuard],
        max_body_bytes: int,
        log_payloads: bool = False,
    ) -> None:
        self.app = app
        self.contexts = RequestContexts(fastapi_app, log_payloads)
        self.limit = BodyLimit(max_body_bytes)
        self.gate = AccessGate(guard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = self.contexts.open(scope, receive, send)
        try:
            await self._serve(scope, context.receive, context.send)
        finally:
            context.close()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.limit.declared_too_large(scope):
            await self.limit.reject(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            admitted = await self.gate.admit(scope, self.limit.counting(receive), tracking_send)
            if admitted is not None:
                await self.app(scope, admitted, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self.limit.reject(scope, receive, send)
