"""The suite's Redis: `REDIS_URL` when reachable, else a throwaway `redis-server` (harness.redis_proc); a local
Redis Cluster (harness.redis_cluster) started once per session when a test asks for one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from app.store import RedisClient, RedisStore
from app.store.client import primaries
from harness.redis_proc import reachable, throwaway_redis

CLUSTER_ENV = "FEWSHOT_TEST_REDIS"
"""`FEWSHOT_TEST_REDIS=cluster`: every test that uses the `redis_url` fixture runs against the local cluster."""


def whole_suite_on_cluster() -> bool:
    return os.environ.get(CLUSTER_ENV, "").lower() == "cluster"


@contextmanager
def test_redis_url() -> Iterator[str]:
    """The single Redis server the suite uses."""
    url = os.environ.get("REDIS_URL")
    if url and reachable(url):
        yield url
        return
    with throwaway_redis() as started:
        yield started


def delete_prefix(client: RedisClient, prefix: str) -> None:
    """Remove every key under `prefix` (on every primary of a cluster)."""
    for primary in primaries(client):
        for key in primary.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


class StoredVersion:
    """The fields of a tenant's current version in its Redis hash (`<n>:head`, `<n>:meta`, `<n>:support`):
    what tampering tests read and damage."""

    def __init__(self, store: RedisStore, tenant: str) -> None:
        version = store.current_version(tenant)
        assert version is not None, f"no tenant {tenant!r}"
        self._client, self.key, self.version = store._client, store.model_key(tenant), version

    def get(self, field: str) -> bytes | None:
        return self._client.hget(self.key, f"{self.version}:{field}")

    def set(self, field: str, value: bytes | str) -> None:
        self._client.hset(self.key, f"{self.version}:{field}", value)

    def set_many(self, fields: dict[str, bytes | str]) -> None:
        self._client.hset(self.key, mapping={f"{self.version}:{name}": value for name, value in fields.items()})
