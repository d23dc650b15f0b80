"""The suite's Redis: `REDIS_URL` when reachable, else a throwaway `redis-server` (harness.redis_proc)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from app.store import RedisStore
from harness.redis_proc import reachable, throwaway_redis


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
