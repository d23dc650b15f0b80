"""A complete HTTP ASGI scope, for calling the app in process below its HTTP server (tests, benchmarks)."""

from __future__ import annotations

from typing import Any


def http_scope(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] = ("127.0.0.1", 5555),
    server: tuple[str, int] = ("testserver", 80),
) -> dict[str, Any]:
    """What uvicorn hands the app for one HTTP/1.1 request (no query string), with an empty `state`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": server,
        "state": {},
    }
