"""Each request's context: request id (X-Request-ID in and out), access log line, HTTP metrics.

A client that disconnects before its response starts is counted and logged as 499 `client_disconnected`,
never as a server error. `app.web.edge.EdgeMiddleware` opens the context first and closes it last.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

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


class RequestContexts:
    """Opens a `RequestContext` per HTTP request (the path templates are shared by all of them)."""

    def __init__(self, fastapi_app: FastAPI, log_payloads: bool = False) -> None:
        self.templates = _Templates(fastapi_app)
        self.log_payloads = log_payloads

    def open(self, scope: Scope, receive: Receive, send: Send) -> RequestContext:
        return RequestContext(self, scope, receive, send)


class RequestContext:
    """One request's id, clock and outcome; `receive` and `send` are the request's, watched. `close()` once."""

    def __init__(self, contexts: RequestContexts, scope: Scope, receive: Receive, send: Send) -> None:
        self._contexts = contexts
        self._scope = scope
        incoming = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        self.request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        self._token = request_id.set(self.request_id)
        self.status = 500
        self.response_started = self.disconnected = False
        self._body = bytearray()
        self._started = time.perf_counter()
        self._receive, self._send = receive, send

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif self._contexts.log_payloads and message["type"] == "http.request" and len(self._body) < _PAYLOAD_LOG_BYTES:
            self._body.extend(message.get("body", b"")[: _PAYLOAD_LOG_BYTES - len(self._body)])
        return message

    async def send(self, message: Message) -> None:
        if self.disconnected and not self.response_started:
            return  # nobody is listening: the request stays counted as a disconnect
        if message["type"] == "http.response.start":
            self.status, self.response_started = int(message["status"]), True
            message.setdefault("headers", [])
            message["headers"] = [*message["headers"], (b"x-request-id", self.request_id.encode("latin-1"))]
        await self._send(message)

    def close(self) -> None:
        """Count, time and log the request."""
        scope = self._scope
        elapsed = time.perf_counter() - self._started
        status = self.status
        if self.disconnected and not self.response_started:
            status = CLIENT_DISCONNECTED
        # the router names the route when the request reached it; otherwise match the documented paths
        route = _template(scope["route"]) if "route" in scope else self._contexts.templates.match(scope["path"])
        method = metrics.method_label(scope["method"])
        metrics.series(metrics.REQUESTS, method, route, str(status)).inc()
        metrics.series(metrics.LATENCY, method, route).observe(elapsed)
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
        if self._contexts.log_payloads:
            fields["body"] = self._body.decode("utf-8", "replace")
        log.info("%s %s %s", scope["method"], scope["path"], status, extra=fields)
        request_id.reset(self._token)
