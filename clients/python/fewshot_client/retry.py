"""When to retry a call and how long to wait: exponential backoff with jitter, or the server's `Retry-After`.

A call is retried only when repeating it cannot apply it twice:
- 429 (`rate_limited`, `tenant_busy`) and 503 `overloaded` are refusals before any work: always retried;
- a connection that was never established: always retried;
- any other 503, or a connection that broke after the request went out: retried only for idempotent calls
  (reads, /predict, /evaluate, /suggest, adding unlabeled texts, DELETE) and for writes that carry
  `expected_version` (a replay of an applied write then fails with 409 instead of applying twice).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

_REFUSED_503_CODES = frozenset({"overloaded"})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class RetryPolicy:
    """`max_attempts` tries in all (1: never retry); waits `backoff_base * 2**n` halved-plus-jitter, at most
    `backoff_max`, or the server's `Retry-After` (at most `max_retry_after`)."""

    max_attempts: int = 4
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._rng = random.Random(self.seed)

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (0-based): half fixed, half jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def wait_after_response(self, attempt: int, response: httpx.Response) -> float:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)


def retryable_status(response: httpx.Response, code: str | None, replay_safe: bool) -> bool:
    """Whether this answer may be retried (see the module docstring)."""
    if response.status_code == 429:
        return True
    if response.status_code == 503:
        return code in _REFUSED_503_CODES or replay_safe
    return False


def retryable_transport_error(exc: httpx.TransportError, replay_safe: bool) -> bool:
    """Whether a call that failed without an answer may be retried."""
    return isinstance(exc, _NEVER_SENT) or replay_safe
