"""One contract, two stores: MemoryStore and RedisStore (against a real Redis)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.store import MemoryStore, RedisStore, TenantStore
from app.store.base import NO_MODEL

META = {"labels": ["a", "b"], "note": "ünïcode"}
SUPPORT = [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[TenantStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield request.getfixturevalue("redis_store")


def test_unknown_tenant_is_none(store: TenantStore) -> None:
    assert store.load("nobody") is None
    assert store.current_version("nobody") is None
    assert store.load_support("nobody") is None
    assert store.delete("nobody") is False


def test_round_trip(store: TenantStore) -> None:
    head = bytes(range(256)) * 4
    version = store.save("t1", head, META, SUPPORT)
    assert version == 1
    loaded = store.load("t1")
    assert loaded is not None
    assert loaded.version == 1 and loaded.head == head and loaded.meta == META
    assert store.load_support("t1") == SUPPORT
    assert store.current_version("t1") == 1


def test_versions_strictly_increase_even_across_delete(store: TenantStore) -> None:
    versions = [store.save("t1", b"x", META, SUPPORT) for _ in range(3)]
    assert versions == [1, 2, 3]
    assert store.delete("t1") is True
    assert store.load("t1") is None
    assert store.save("t1", b"y", META, SUPPORT) == 4


def test_latest_write_wins_and_replaces_everything(store: TenantStore) -> None:
    store.save("t1", b"old", {"v": 1}, SUPPORT)
    store.save("t1", b"new", {"v": 2}, [{"text": "only", "label": "c"}])
    loaded = store.load("t1")
    assert loaded is not None and loaded.head == b"new" and loaded.meta == {"v": 2}
    assert store.load_support("t1") == [{"text": "only", "label": "c"}]


def test_compare_and_set(store: TenantStore) -> None:
    assert store.save("t1", b"x", META, SUPPORT, expected_version=1) is None  # nothing there yet
    assert store.load("t1") is None
    store.save("t1", b"a", META, SUPPORT)
    assert store.save("t1", b"b", META, SUPPORT, expected_version=7) is None
    assert store.load("t1").head == b"a"  # type: ignore[union-attr]
    assert store.save("t1", b"c", META, SUPPORT, expected_version=1) == 2
    assert store.load("t1").head == b"c"  # type: ignore[union-attr]


def test_creating_is_a_compare_and_set_on_no_model_also_after_delete(store: TenantStore) -> None:
    assert store.save("t1", b"a", META, SUPPORT, expected_version=NO_MODEL) == 1
    assert store.save("t1", b"b", META, SUPPORT, expected_version=NO_MODEL) is None  # a model exists now
    assert store.load("t1").head == b"a"  # type: ignore[union-attr]
    assert store.delete("t1")
    assert store.save("t1", b"c", META, SUPPORT, expected_version=NO_MODEL) == 2  # deleted: no model again
    assert store.save("t1", b"d", META, SUPPORT, expected_version=NO_MODEL) is None
    assert store.load("t1").head == b"c"  # type: ignore[union-attr]


def test_tenants_are_isolated(store: TenantStore) -> None:
    store.save("alpha", b"A", {"who": "alpha"}, SUPPORT)
    store.save("beta", b"B", {"who": "beta"}, SUPPORT)
    store.delete("alpha")
    beta = store.load("beta")
    assert beta is not None and beta.head == b"B" and beta.meta == {"who": "beta"}
    assert store.load("alpha") is None


def test_ping(store: TenantStore) -> None:
    store.ping()


def test_loaded_meta_is_a_copy(store: TenantStore) -> None:
    store.save("t1", b"x", {"labels": ["a"]}, SUPPORT)
    loaded = store.load("t1")
    assert loaded is not None
    loaded.meta["labels"].append("mutated")
    assert store.load("t1").meta == {"labels": ["a"]}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_ttl_expires_tenants(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "memory":
        store: TenantStore = MemoryStore(ttl_s=1)
    else:
        store = RedisStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"), ttl_s=1
        )
    store.save("t1", b"x", META, SUPPORT)
    assert store.load("t1") is not None
    time.sleep(1.3)
    assert store.load("t1") is None
    assert store.save("t1", b"y", META, SUPPORT) == 2


def test_redis_keys_are_namespaced(redis_store: RedisStore, redis_prefix: str) -> None:
    redis_store.save("t1", b"x", META, SUPPORT)
    keys = sorted(key.decode() for key in redis_store._client.scan_iter(match=f"{redis_prefix}:*"))
    tenant = f"{redis_prefix}:{{t1}}"
    assert keys == [f"{tenant}:model", f"{tenant}:seq", f"{tenant}:v:1", f"{tenant}:versions"]
    redis_store.delete("t1")
    remaining = [key.decode() for key in redis_store._client.scan_iter(match=f"{redis_prefix}:*")]
    assert remaining == [f"{tenant}:seq"]


def test_unreachable_redis_raises_store_unavailable() -> None:
    from app.store import StoreUnavailable
    from harness.ports import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.load("t1")
    with pytest.raises(StoreUnavailable):
        store.ping()
    assert time.monotonic() - started < 10


@pytest.fixture(params=["memory", "redis"])
def store3(request: pytest.FixtureRequest) -> Iterator[TenantStore]:
    """Stores that keep the last 3 versions."""
    if request.param == "memory":
        yield MemoryStore(keep_versions=3)
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        request.getfixturevalue("redis_store")  # cleans the prefix afterwards
        yield RedisStore(url, prefix=prefix, keep_versions=3)


def test_last_versions_are_retained(store3: TenantStore) -> None:
    for i in range(1, 6):
        store3.save("t1", f"head{i}".encode(), {"i": i}, [{"text": str(i), "label": "a"}])
    infos = store3.versions("t1")
    assert [info.version for info in infos] == [5, 4, 3]
    assert [info.meta for info in infos] == [{"i": 5}, {"i": 4}, {"i": 3}]
    assert all(info.head_bytes == 5 for info in infos)
    old = store3.load("t1", version=3)
    assert old is not None and old.head == b"head3" and old.version == 3
    assert store3.load_support("t1", version=4) == [{"text": "4", "label": "a"}]
    assert store3.load("t1", version=2) is None  # fell out of the window
    assert store3.load("t1").version == 5  # type: ignore[union-attr]


def test_rollback_republishes_an_old_version(store3: TenantStore) -> None:
    for i in range(1, 4):
        store3.save("t1", f"head{i}".encode(), {"i": i}, [{"text": str(i), "label": "a"}])
    assert store3.rollback("t1", 1) == 4
    current = store3.load("t1")
    assert current is not None and current.version == 4 and current.head == b"head1" and current.meta == {"i": 1}
    assert store3.load_support("t1") == [{"text": "1", "label": "a"}]
    assert [info.version for info in store3.versions("t1")] == [4, 3, 2]
    assert store3.rollback("t1", 1) is None  # no longer retained
    assert store3.rollback("nobody", 1) is None


def test_versions_of_unknown_tenant_is_empty(store: TenantStore) -> None:
    assert store.versions("nobody") == []
    store.save("t1", b"x", META, SUPPORT)
    store.delete("t1")
    assert store.versions("t1") == []


def test_redis_stores_each_version_once_with_compressed_support(redis_store: RedisStore, redis_prefix: str) -> None:
    texts = [f"please tell me where my card number {i} is, it has not arrived yet" for i in range(40)]
    support = [{"text": text, "label": "card"} for text in texts]
    head = bytes(range(256)) * 8
    redis_store.save("t1", head, META, support)
    client, tenant = redis_store._client, f"{redis_prefix}:{{t1}}"
    assert client.hgetall(f"{tenant}:model") == {b"version": b"1"}  # a pointer, not a second copy
    stored_support = client.hget(f"{tenant}:v:1", "support")
    assert len(stored_support) < 0.5 * sum(len(t) for t in texts)  # zlib'd JSON, not plain JSON
    assert redis_store.load_support("t1") == support and redis_store.load("t1").head == head


def test_redis_refuses_a_support_value_that_is_not_zlibd(redis_store: RedisStore, redis_prefix: str) -> None:
    """Support sets were always stored zlib'd (the service was never released with plain JSON ones)."""
    import json

    redis_store.save("t1", b"x", META, SUPPORT)
    redis_store._client.hset(f"{redis_prefix}:{{t1}}:v:1", "support", json.dumps(SUPPORT))
    assert redis_store.load_support("t1") is None


def test_redis_refuses_a_support_value_that_inflates_without_end(redis_store: RedisStore, redis_prefix: str) -> None:
    import zlib

    redis_store.save("t1", b"x", META, SUPPORT)
    bomb = zlib.compress(b"[" + b" " * (80 << 20) + b"]", 9)
    redis_store._client.hset(f"{redis_prefix}:{{t1}}:v:1", "support", bomb)
    assert redis_store.load_support("t1") is None


def test_redis_stores_heads_zlibd_and_reads_them_back_exactly(redis_store: RedisStore, redis_prefix: str) -> None:
    import torch

    from app.store.redis import HEAD_ZLIB_MAGIC

    torch.manual_seed(0)
    head = (torch.randn(77, 384) * 20).round().clamp(-127, 127).to(torch.int8).numpy().tobytes()  # int8-row-like
    redis_store.save("t1", head, META | {"head_bytes": len(head)}, SUPPORT)
    stored = redis_store._client.hget(f"{redis_prefix}:{{t1}}:v:1", "head")
    assert stored.startswith(HEAD_ZLIB_MAGIC) and len(stored) < len(head)
    assert redis_store.load("t1").head == head and redis_store.load("t1", version=1).head == head
    assert redis_store.versions("t1")[0].head_bytes == len(head)  # the head's own size, not the stored one


@pytest.mark.parametrize("stored", ["bomb", "truncated"])
def test_redis_hands_back_a_head_that_does_not_inflate_as_stored(
    redis_store: RedisStore, redis_prefix: str, stored: str
) -> None:
    """It then fails the record's checksum like any corrupt head (the service rebuilds it, see tests/api)."""
    import zlib

    from app.store.redis import HEAD_ZLIB_MAGIC

    redis_store.save("t1", b"head" * 100, META, SUPPORT)
    key = f"{redis_prefix}:{{t1}}:v:1"
    if stored == "bomb":
        value = HEAD_ZLIB_MAGIC + zlib.compress(b"\0" * (80 << 20), 9)
    else:
        value = redis_store._client.hget(key, "head")[:-5]
    redis_store._client.hset(key, "head", value)
    assert redis_store.load("t1").head == value
