"""The HTTP server under test: `fewshot serve` as a real process, or an app under uvicorn in a thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from harness.ports import free_port
from harness.redis_proc import throwaway_redis

READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerProcess:
    url: str
    pid: int


@contextmanager
def served(command: list[str], port: int, env: dict[str, str], ready_path: str = "/readyz") -> Iterator[ServerProcess]:
    """Run `command` (an HTTP server listening on `port`) until `ready_path` answers 200; stop it afterwards."""
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited during start-up")
            try:
                if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield ServerProcess(base, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def fewshot_process(
    redis_url: str, prefix: str = "bench", extra_env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A `fewshot serve` process (`python -m app.cli serve`) on a free port backed by `redis_url`."""
    port = free_port()
    env = os.environ | {
        "FEWSHOT_STORE": "redis",
        "FEWSHOT_REDIS_URL": redis_url,
        "FEWSHOT_REDIS_PREFIX": prefix,
        "FEWSHOT_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with served(command, port, env | (extra_env or {})) as server:
        yield server


@contextmanager
def fewshot_server(redis_url: str, prefix: str = "bench", extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Like `fewshot_process`, yielding only the base URL."""
    with fewshot_process(redis_url, prefix, extra_env) as server:
        yield server.url


@contextmanager
def redis_and_server(extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """(redis_url, server_url) for a fresh Redis and one server process."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(throwaway_redis())
        server = stack.enter_context(fewshot_server(redis_url, extra_env=extra_env))
        yield redis_url, server


@contextmanager
def serve_in_thread(app: Any, **uvicorn_config: Any) -> Iterator[str]:
    """Run the ASGI `app` under a real uvicorn server in a daemon thread on a free loopback port; yield its URL.

    `uvicorn_config` goes to `uvicorn.Config` (e.g. the options `fewshot serve` uses); the lifespan runs.
    """
    options = {"log_level": "warning", "lifespan": "on"} | uvicorn_config
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
