"""Server options for `fewshot serve`: what a slow or idle client can hold, and how large a request head may be.

uvicorn itself times out only idle keep-alive connections: a client that trickles its request line, headers or
body one byte at a time keeps a connection (and its request task) forever. `DeadlineH11Protocol` gives every
request a deadline: the whole request (headers and body) must arrive within `request_timeout_s` of the
connection opening or of the request's first byte on a kept-alive connection (idle kept-alive connections
close after `timeout_keep_alive_s`, as in plain uvicorn); otherwise the server answers 408 and closes.
Worker threads are never involved: the app reads the body on the event loop before a sync route runs, so a
slow client holds a connection and a coroutine, never a thread. `limit_concurrency` caps connections.

The request line and headers may take at most `MAX_HEAD_BYTES` (16 KiB): a larger head is answered 431
`headers_too_large`, whether it arrives at once or in pieces (h11 alone only refuses an *incomplete* head over
its limit, so a 70 KB head that arrived in one read passed). A request h11 cannot parse gets 400 `bad_request`.
Both answers use the JSON error envelope, like every error of the app.

Two parsers carry these guarantees: `httptools` (llhttp, C; the default, with uvloop as the event
loop) and `h11` (pure Python). `FEWSHOT_HTTP_PARSER` picks one; the tests run the guarantees on both.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings
from app.web.errors import error_body

_FINISHED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


MAX_HEAD_BYTES = 16 * 1024
_HEAD_END = b"\r\n\r\n"


def _error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error answer with the JSON error envelope; the connection closes after it."""
    body = json.dumps(error_body(code, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _timeout_response() -> bytes:
    return _error_response(408, "Request Timeout", "request_timeout", "the request was not received in time")


class _RequestGuards:
    """What both parsers' protocols add to uvicorn's: the request deadline, refusing with a JSON answer, and the
    concurrency limit answered with the JSON envelope. Mixed in before uvicorn's protocol class."""

    request_timeout_s: float = 30.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: Any
    cycle: Any

    def _init_guards(self) -> None:
        self._request_deadline: asyncio.TimerHandle | None = None
        self._refused = False
        # uvicorn answers an exceeded `limit_concurrency` in plain text; the same check, with the JSON envelope:
        self._concurrency_limit, self.limit_concurrency = self.limit_concurrency, None  # type: ignore[has-type]
        self._app, self.app = self.app, self._within_concurrency_limit  # type: ignore[has-type]

    async def _within_concurrency_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._concurrency_limit
        # uvicorn checks before the request's task exists; here it already counts in `tasks`
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) > limit):  # type: ignore[attr-defined]
            self.logger.warning("Exceeded concurrency limit.")
            body = json.dumps(error_body("overloaded", "too many concurrent requests; retry shortly")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": [*headers, (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_request_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_request_deadline(self) -> None:
        self._disarm_request_deadline()
        self._request_deadline = self.loop.call_later(self.request_timeout_s, self._request_deadline_expired)

    def _disarm_request_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _request_received(self) -> bool:
        """Whether the current request has arrived whole (the app may take its time)."""
        raise NotImplementedError

    def _request_deadline_expired(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing() or self._request_received():
            return
        self.logger.warning("closing a connection whose request took longer than %.1f s", self.request_timeout_s)
        if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
            self.transport.write(_timeout_response())
        self.transport.close()

    def _refuse_head_too_large(self) -> None:
        self.logger.warning("refusing a request whose head is larger than %d bytes", MAX_HEAD_BYTES)
        self._refuse(
            _error_response(
                431,
                "Request Header Fields Too Large",
                "headers_too_large",
                f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
            )
        )

    def send_400_response(self, msg: str) -> None:
        """The parser could not read the request: the JSON error envelope instead of uvicorn's plain text."""
        self._refuse(_error_response(400, "Bad Request", "bad_request", "malformed HTTP request"))

    def _refuse(self, response: bytes) -> None:
        """Answer and close without resetting the connection: closing with unread bytes (the rest of a large
        head) makes the kernel send a reset that can destroy the answer before the client reads it, so the
        write side shuts first and what still arrives is discarded until the client closes (or a second passes)."""
        self._disarm_request_deadline()
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(1.0, self.transport.close)
        else:
            self.transport.close()


def _head_too_large(buffered: bytes, data: bytes) -> bool:
    """Whether a head being received (`buffered` so far, then `data`) is, or will be, over `MAX_HEAD_BYTES`."""
    if len(buffered) + len(data) <= MAX_HEAD_BYTES:
        return False
    window = (bytes(buffered) + data)[: MAX_HEAD_BYTES + len(_HEAD_END)]
    return _HEAD_END not in window


class DeadlineH11Protocol(_RequestGuards, H11Protocol):
    """uvicorn's h11 protocol plus the request guards (deadline, 16 KiB head cap, JSON error answers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_guards()

    def _request_received(self) -> bool:
        return self.conn.their_state in _FINISHED

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in _FINISHED:
            self._disarm_request_deadline()  # the whole request is in; the app may take its time

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request
        if self._request_deadline is None and self.conn.their_state not in _FINISHED:
            self._arm_request_deadline()  # the first bytes of the next request on a keep-alive connection
        if self.conn.their_state is h11.IDLE and _head_too_large(self.conn.trailing_data[0], data):
            self._refuse_head_too_large()
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pipelined = bool(self.conn.trailing_data[0])
        if pipelined and not self.transport.is_closing() and self.conn.their_state not in _FINISHED:
            self._arm_request_deadline()  # part of the next request arrived while this one was served


class DeadlineHttpToolsProtocol(_RequestGuards, HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol plus the same request guards as `DeadlineH11Protocol`.

    The head is counted from the first byte of a request until llhttp reports the headers complete; bytes of
    a pipelined request that arrive in the same read as the previous request's end are not counted (llhttp's
    own 80 KB header limit still bounds them).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_guards()
        self._complete = False  # the current request arrived whole
        self._head = bytearray()  # bytes of the head being received (capped)
        self._in_head = True

    def _request_received(self) -> bool:
        return self._complete

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request
        if self._request_deadline is None and (self._complete or self._in_head):
            self._arm_request_deadline()  # the first bytes of the next request on a keep-alive connection
        if self._in_head:
            if _head_too_large(self._head, data):
                self._refuse_head_too_large()
                return
            self._head += data[: MAX_HEAD_BYTES + len(_HEAD_END)]
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._complete = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head.clear()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._complete, self._in_head = True, True
        self._disarm_request_deadline()  # the whole request is in; the app may take its time
        super().on_message_complete()


def deadline_protocol(request_timeout_s: float, parser: str = "auto") -> type[_RequestGuards]:
    """The protocol class for `parser` (`auto` and `httptools`: httptools; `h11`: h11) with the given request
    deadline (uvicorn builds one instance per connection)."""
    base: type[_RequestGuards] = DeadlineH11Protocol if parser == "h11" else DeadlineHttpToolsProtocol
    return type(base.__name__, (base,), {"request_timeout_s": float(request_timeout_s)})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config`: the parser and its guards for slow and idle clients,
    and uvloop as the event loop when installed (uvicorn's `auto`)."""
    return {
        "http": deadline_protocol(settings.request_timeout_s, settings.http_parser),
        "loop": "auto",
        "timeout_keep_alive": settings.timeout_keep_alive_s,
        "limit_concurrency": settings.limit_concurrency,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
