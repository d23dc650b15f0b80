"""A one-line progress bar on stderr: rows done, rate and ETA (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """`update(done, errors)` redraws at most every `interval` s (in place on a terminal, one line per
    `log_interval` s otherwise); `done` counts rows of the whole file, `start` those finished before this run."""

    def __init__(
        self, total: int, start: int = 0, stream: TextIO | None = None, interval: float = 0.2, log_interval: float = 10
    ) -> None:
        self.total = total
        self.start = start
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else log_interval
        self._began = time.monotonic()
        self._drawn = 0.0

    def line(self, done: int, errors: int) -> str:
        elapsed = time.monotonic() - self._began
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        left = self.total - done
        eta = _clock(left / rate) if rate > 0 else "?"
        share = 100 * done / self.total if self.total else 100.0
        width = 24
        filled = int(width * share / 100)
        bar = "#" * filled + "." * (width - filled)
        return f"[{bar}] {done}/{self.total} rows {share:5.1f} %  {rate:7.1f} rows/s  ETA {eta}  errors {errors}"

    def update(self, done: int, errors: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._drawn < self.interval:
            return
        self._drawn = now
        end = "\n" if final or not self.tty else ""
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.line(done, errors)}{end}")
        self.stream.flush()
