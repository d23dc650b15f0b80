"""A `redis-server` process a test can stop, freeze, kill and restart on the same port and data directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.redis_server import INSTALL_HINT, free_port, reachable


class RedisProcess:
    """One redis-server (AOF optional) on a fixed loopback port; `start()` again after `kill()` to restart."""

    def __init__(self, data_dir: Path, appendonly: bool = True, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.data_dir)]
        command += ["--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not reachable(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
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
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None
