"""A real Redis for tests: `REDIS_URL` when reachable, else a throwaway `redis-server`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from app.store import RedisStore

INSTALL_HINT = (
    "redis-server not found: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        return True
    except (redis.RedisError, OSError):
        return False


@contextmanager
def throwaway_redis(appendonly: bool = False, port: int | None = None, data_dir: Path | None = None) -> Iterator[str]:
    """Start `redis-server` on a free port (optionally with AOF in `data_dir`); yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(INSTALL_HINT)
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="fewshot-redis-") as tmp:
        directory = data_dir or Path(tmp)
        command = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(directory),
            "--appendonly",
            "yes" if appendonly else "no",
            "--daemonize",
            "no",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 10
            while not reachable(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextmanager
def test_redis_url() -> Iterator[str]:
    """The Redis the suite uses."""
    url = os.environ.get("REDIS_URL")
    if url and reachable(url):
        yield url
        return
    with throwaway_redis() as started:
        yield started


def current_version_key(store: RedisStore, tenant: str) -> str:
    """The Redis hash holding a tenant's current version (what tampering tests damage)."""
    version = store.current_version(tenant)
    assert version is not None, f"no tenant {tenant!r}"
    return store._version_key(tenant, version)
