"""A real `redis-server` process: throwaway for one block, or one a test can freeze, kill and restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from harness.ports import free_port

INSTALL_HINT = (
    "redis-server not found: install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`)"
)


def reachable(url: str) -> bool:
    """True when a Redis at `url` answers PING within half a second."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        return True
    except (redis.RedisError, OSError):
        return False


class RedisProcess:
    """One redis-server (AOF optional) on a fixed loopback port; `start()` again after `kill()` to restart."""

    def __init__(self, data_dir: Path, appendonly: bool = True, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.data_dir)]
        command += ["--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not reachable(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung or partitioned Redis)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown, no final AOF rewrite); works on a frozen process too."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is frozen) and wait."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


@contextmanager
def throwaway_redis(appendonly: bool = False, port: int | None = None, data_dir: Path | None = None) -> Iterator[str]:
    """Start `redis-server` on a free port (optionally with AOF in `data_dir`); yield its URL; stop it."""
    with tempfile.TemporaryDirectory(prefix="fewshot-redis-") as tmp:
        process = RedisProcess(data_dir or Path(tmp), appendonly=appendonly, port=port)
        process.start()
        try:
            yield process.url
        finally:
            process.stop()
