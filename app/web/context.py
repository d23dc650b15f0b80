"""Outermost middleware: request id (X-Request-ID in and out), access log line, HTTP metrics.

A client that disconnects before its response starts is counted and logged as 499 `client_disconnected`,
never as a server error.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web import metrics
from app.web.logs import request_id

log = logging.getLogger("fewshot.access_log")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PAYLOAD_LOG_BYTES = 4096
CLIENT_DISCONNECTED = 499  # nginx's status for a client that closed the connection first


def _template(route: object) -> str:
    return str(getattr(route, "path_format", None) or getattr(route, "path", None) or metrics.UNMATCHED_ROUTE)


class _Templates:
    """Path templates of the documented operations, to label requests refused before routing (e.g. 401)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str:
        if self._compiled is None:
            self._compiled = [(compile_path(template)[0], template) for template in self.app.openapi().get("paths", {})]
        return next((template for regex, template in self._compiled if regex.match(path)), metrics.UNMATCHED_ROUTE)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, log_payloads: bool = False) -> None:
        self.app = app
        self.templates = _Templates(fastapi_app)
        self.log_payloads = log_payloads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        response_started = disconnected = False
        body = bytearray()
        started = time.perf_counter()

        async def watching_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            elif self.log_payloads and message["type"] == "http.request" and len(body) < _PAYLOAD_LOG_BYTES:
                body.extend(message.get("body", b"")[: _PAYLOAD_LOG_BYTES - len(body)])
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status, response_started
            if disconnected and not response_started:
                return  # nobody is listening: the request stays counted as a disconnect
            if message["type"] == "http.response.start":
                status, response_started = int(message["status"]), True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, watching_receive, tagged_send)
        finally:
            elapsed = time.perf_counter() - started
            if disconnected and not response_started:
                status = CLIENT_DISCONNECTED
            # the router names the route when the request reached it; otherwise match the documented paths
            route = _template(scope["route"]) if "route" in scope else self.templates.match(scope["path"])
            method = metrics.method_label(scope["method"])
            metrics.REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.LATENCY.labels(method=method, route=route).observe(elapsed)
            principal = scope.get("state", {}).get("principal")
            fields = {
                "method": scope["method"],
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "key_id": getattr(principal, "key_id", None),
            }
            if status == CLIENT_DISCONNECTED:
                fields["error"] = "client_disconnected"
            if self.log_payloads:
                fields["body"] = body.decode("utf-8", "replace")
            log.info("%s %s %s", scope["method"], scope["path"], status, extra=fields)
            request_id.reset(token)
