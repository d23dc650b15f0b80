"""Slow and idle clients against a real uvicorn server with the options `fewshot serve` uses.

A client that opens a connection and sends nothing, trickles its headers, or trickles its body one byte at a
time is answered 408 and disconnected once `request_timeout_s` has passed; a client that is merely a bit slow,
or keeps a connection alive between requests, is served.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from app.web.app import create_app
from tests.reliability.conftest import serve_in_thread, small_settings

REQUEST_TIMEOUT_S = 1.0
BOUND_S = 8.0  # generous bound on "closed after about REQUEST_TIMEOUT_S"
BODY = json.dumps({"tenant_id": "nobody", "texts": ["hello"]}).encode()
HEAD = (
    f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
).encode()


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(redis_url: str, real_model, request: pytest.FixtureRequest) -> Iterator[str]:
    """The same guarantees with either HTTP parser `fewshot serve` can run."""
    settings = small_settings(redis_url, "slow-clients", request_timeout_s=REQUEST_TIMEOUT_S, http_parser=request.param)
    with serve_in_thread(create_app(settings, model=real_model), settings) as base:
        yield base.removeprefix("http://")


def _connect(server: str) -> socket.socket:
    host, port = server.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(0.05)
    return sock


def _trickle(sock: socket.socket, payload: bytes, interval_s: float = 0.1) -> tuple[bytes, int, float]:
    """Send `payload` one byte per interval until the server answers or closes; (reply, bytes sent, seconds)."""
    started, sent, reply = time.monotonic(), 0, b""
    while time.monotonic() - started < BOUND_S:
        if sent < len(payload):
            try:
                sock.sendall(payload[sent : sent + 1])
                sent += 1
            except OSError:  # reset by the server
                break
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            time.sleep(interval_s)
            continue
        except OSError:
            break
        if not chunk:  # closed by the server
            break
        reply += chunk
    return reply, sent, time.monotonic() - started


@pytest.mark.parametrize(
    "payload",
    [b"", HEAD[:-2] + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n", HEAD + BODY],
    ids=["idle-connection", "trickled-headers", "trickled-body"],
)
def test_slow_client_gets_408_and_is_disconnected(server: str, payload: bytes) -> None:
    with _connect(server) as sock:
        if payload == HEAD + BODY:
            sock.sendall(HEAD)  # headers at once, then the body byte by byte
            payload = BODY
        reply, sent, elapsed = _trickle(sock, payload)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"request_timeout"' in reply
    assert elapsed < BOUND_S, f"connection held {elapsed:.1f} s"
    assert sent < len(payload) or not payload, "the request completed; nothing was slow"


def test_a_merely_slow_client_and_keep_alive_are_served(server: str) -> None:
    with _connect(server) as sock:
        for _ in range(2):  # two requests on one keep-alive connection
            for chunk in (HEAD, BODY[:10], BODY[10:]):
                sock.sendall(chunk)
                time.sleep(REQUEST_TIMEOUT_S / 5)
            sock.settimeout(30)
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 404"), reply[:200]  # unknown tenant: the request was processed
            time.sleep(REQUEST_TIMEOUT_S / 2)
    with httpx.Client(base_url=f"http://{server}", timeout=30) as http:
        assert http.get("/healthz").status_code == 200


def test_the_parser_setting_picks_the_protocol() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from app.web.server import deadline_protocol

    assert issubclass(deadline_protocol(2.0, "auto"), HttpToolsProtocol)  # httptools is a dependency
    assert issubclass(deadline_protocol(2.0, "h11"), H11Protocol)
    assert deadline_protocol(2.0, "httptools").request_timeout_s == 2.0
