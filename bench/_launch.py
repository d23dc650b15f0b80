"""Start a throwaway redis-server and `fewshot serve` processes for benchmarks (real processes, real HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from tests.redis_server import free_port, throwaway_redis


@contextmanager
def fewshot_server(redis_url: str, prefix: str = "bench", extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A `fewshot serve` process on a free port; yields its base URL once /readyz answers."""
    port = free_port()
    env = (
        os.environ
        | {
            "FEWSHOT_STORE": "redis",
            "FEWSHOT_REDIS_URL": redis_url,
            "FEWSHOT_REDIS_PREFIX": prefix,
            "FEWSHOT_LOG_LEVEL": "warning",
        }
        | (extra_env or {})
    )
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def redis_and_server(extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """(redis_url, server_url) for a fresh Redis and one server process."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(throwaway_redis())
        server = stack.enter_context(fewshot_server(redis_url, extra_env=extra_env))
        yield redis_url, server
