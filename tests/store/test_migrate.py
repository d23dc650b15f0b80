"""`python -m app.store.migrate`: data written in the layout before issue 19 reads back in the new one."""

from __future__ import annotations

import json

import pytest

from app.access.keys import RedisKeyStore, make_record
from app.store import RedisClient, RedisStore, connect
from app.store.migrate import migrate
from app.store.redis import encode_head, encode_support
from tests.redis_server import delete_prefix

SUPPORT = [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}]


def write_old_layout(client: RedisClient, prefix: str, tenant: str, versions: list[int], ttl_s: int = 0) -> None:
    """What the pre-cluster store wrote: a pointer hash, a version list, one hash per version, a counter."""
    base = f"{prefix}:{{{tenant}}}"
    client.hset(f"{base}:model", "version", versions[0])
    client.rpush(f"{base}:versions", *versions)
    client.set(f"{base}:seq", max(versions))
    for n in versions:
        meta = json.dumps({"n": n, "head_bytes": 5})
        fields = {
            "version": n,
            "head": encode_head(f"head{n}".encode()),
            "meta": meta,
            "support": encode_support(SUPPORT),
        }
        client.hset(f"{base}:v:{n}", mapping=fields)
    if ttl_s:
        for suffix in ("model", "versions", *(f"v:{n}" for n in versions)):
            client.expire(f"{base}:{suffix}", ttl_s)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_old_layout_is_migrated(kind: str, request: pytest.FixtureRequest, redis_prefix: str) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else request.getfixturevalue("redis_cluster").url
    client = connect(url)
    try:
        write_old_layout(client, redis_prefix, "alpha", [3, 2, 1])
        write_old_layout(client, redis_prefix, "beta", [7], ttl_s=600)
        _key, record = make_record("ops", admin=False, tenants=["alpha"])
        client.hset(f"{redis_prefix}:access:keys", "digest-1", record.to_json())
        client.hset(f"{redis_prefix}:access:ids", record.key_id, "digest-1")

        report = migrate(client, redis_prefix)
        assert (report.tenants, report.versions, report.access_hashes) == (2, 4, 2)
        assert migrate(client, redis_prefix).tenants == 0  # idempotent

        store = RedisStore(url, prefix=redis_prefix, client=client)
        assert sorted(store.tenant_ids()) == ["alpha", "beta"]
        alpha = store.load("alpha")
        assert alpha is not None and alpha.version == 3 and alpha.head == b"head3" and alpha.meta["n"] == 3
        assert [info.version for info in store.versions("alpha")] == [3, 2, 1]
        assert store.load("alpha", version=1).head == b"head1"  # type: ignore[union-attr]
        assert store.load_support("alpha", version=2) == SUPPORT
        assert 0 < client.ttl(f"{redis_prefix}:{{beta}}:model") <= 600  # the tenant's TTL kept
        assert store.rollback("alpha", 1) == 4 and store.save("beta", b"new", {}, SUPPORT) == 8
        assert not client.exists(f"{redis_prefix}:{{alpha}}:versions", f"{redis_prefix}:{{alpha}}:v:3")
        assert RedisKeyStore(client, redis_prefix).lookup("digest-1") == record
    finally:
        delete_prefix(client, redis_prefix)
