"""Fixed-window request counters per identity (API key id, or client address when auth is off)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from app.store import RedisClient, redis_errors


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_s: int


def _window(window_s: int, now: float) -> tuple[int, int]:
    """(window index, whole seconds until it ends, at least 1)."""
    index = int(now // window_s)
    return index, max(1, math.ceil((index + 1) * window_s - now))


def _decide(count: int, limit: int, retry_after_s: int) -> Decision:
    return Decision(allowed=count <= limit, remaining=max(0, limit - count), retry_after_s=retry_after_s)


class RateLimiter(Protocol):
    def hit(self, identity: str) -> Decision:
        """Count one request for `identity` and say whether it is within the limit."""
        ...


class MemoryRateLimiter:
    """One process (embedded mode)."""

    def __init__(self, limit: int, window_s: int) -> None:
        self.limit, self.window_s = limit, window_s
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, identity: str) -> Decision:
        index, retry_after = _window(self.window_s, time.time())
        with self._lock:
            window, count = self._counts.get(identity, (index, 0))
            count = count + 1 if window == index else 1
            self._counts[identity] = (index, count)
            if len(self._counts) > 100_000:  # forget identities from past windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == index}
        return _decide(count, self.limit, retry_after)


class RedisRateLimiter:
    """Shared by every replica: INCR + EXPIRE on `<prefix>:ratelimit:<identity>:<window>` in one transaction
    (one key, so one Redis Cluster slot)."""

    def __init__(self, client: RedisClient, prefix: str, limit: int, window_s: int) -> None:
        self._client, self._prefix = client, prefix
        self.limit, self.window_s = limit, window_s

    def hit(self, identity: str) -> Decision:
        index, retry_after = _window(self.window_s, time.time())
        key = f"{self._prefix}:ratelimit:{identity}:{index}"
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, self.window_s + 1)
            count, _ = pipe.execute()
        return _decide(int(count), self.limit, retry_after)
