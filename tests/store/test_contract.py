"""One contract, three stores: MemoryStore, RedisStore on a real Redis server and on a real Redis Cluster
(3 primaries + 3 replicas, started once per session)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.store import MemoryStore, PoolUpdate, RedisStore, StoreUnavailable, TenantStore
from app.store.base import NO_MODEL
from app.store.client import primaries
from tests.redis_server import delete_prefix

META = {"labels": ["a", "b"], "note": "ünïcode"}
SUPPORT = [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}]


KINDS = ["memory", "redis", "cluster"]
MakeStore = Callable[..., TenantStore]


def redis_url_of(request: pytest.FixtureRequest, kind: str) -> str:
    """The single test server's URL, or the session cluster's (`redis+cluster://...`)."""
    return request.getfixturevalue("redis_url") if kind == "redis" else request.getfixturevalue("redis_cluster").url


@pytest.fixture
def make_store(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[Callable[..., TenantStore]]:
    """`make_store(kind, **options)`: a store of that kind; Redis ones under a fresh prefix, removed afterwards."""
    made: list[RedisStore] = []

    def make(kind: str, **options: Any) -> TenantStore:
        if kind == "memory":
            return MemoryStore(**options)
        store = RedisStore(redis_url_of(request, kind), prefix=redis_prefix, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        delete_prefix(store._client, redis_prefix)
        store.close()


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, make_store: MakeStore) -> TenantStore:
    return make_store(request.param)


@pytest.fixture(params=["redis", "cluster"])
def any_redis_store(request: pytest.FixtureRequest, make_store: MakeStore) -> RedisStore:
    """A RedisStore on the single server and on the cluster."""
    made = make_store(request.param)
    assert isinstance(made, RedisStore)
    return made


def stored_keys(store: RedisStore, prefix: str) -> list[str]:
    return sorted(key.decode() for node in primaries(store._client) for key in node.scan_iter(match=f"{prefix}:*"))


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


def test_multilabel_support_rows_round_trip(store: TenantStore) -> None:
    rows = [{"text": "charged twice", "labels": ["billing", "bug"]}, {"text": "thanks", "labels": []}]
    rows.append({"text": "money matters", "label": "billing", "description": True})
    store.save("t1", b"head", META, rows)
    assert store.load_support("t1") == rows


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


@pytest.mark.parametrize("kind", KINDS)
def test_ttl_expires_tenants(kind: str, make_store: MakeStore) -> None:
    store = make_store(kind, ttl_s=1)
    store.save("t1", b"x", META, SUPPORT)
    assert store.load("t1") is not None
    time.sleep(1.3)
    assert store.load("t1") is None
    assert store.save("t1", b"y", META, SUPPORT) == 2


def test_redis_keys_are_namespaced_two_per_tenant(any_redis_store: RedisStore, redis_prefix: str) -> None:
    for _ in range(3):
        any_redis_store.save("t1", b"x", META, SUPPORT)
    tenant = f"{redis_prefix}:{{t1}}"
    assert stored_keys(any_redis_store, redis_prefix) == [f"{tenant}:model", f"{tenant}:seq"]
    fields = any_redis_store._client.hkeys(f"{tenant}:model")
    assert sorted(fields) == sorted(
        [b"version", b"versions"] + [f"{n}:{f}".encode() for n in (1, 2, 3) for f in ("head", "meta", "support")]
    )
    any_redis_store.delete("t1")
    assert stored_keys(any_redis_store, redis_prefix) == [f"{tenant}:seq"]


def test_every_script_declares_the_keys_it_touches() -> None:
    """Redis Cluster routes a script by its KEYS: each `redis.call` names a key from KEYS, never one built
    from ARGV."""
    from app.store import redis as redis_module

    scripts = [value for name, value in vars(redis_module).items() if name.endswith("_SCRIPT")]
    assert len(scripts) == 6
    for script in scripts:
        calls = re.findall(r"redis\.call\('(\w+)',\s*([^,)]+)", script)
        assert calls
        for command, first_key in calls:
            assert first_key.strip().startswith("KEYS["), (command, first_key)


def test_tenant_listing_covers_every_primary(make_store: MakeStore, redis_cluster: Any, redis_prefix: str) -> None:
    store = make_store("cluster")
    tenants = [f"tenant-{i}" for i in range(24)]
    for tenant in tenants:
        store.save(tenant, b"x", META, SUPPORT)
    holders = {redis_cluster.primary_for(f"{redis_prefix}:{{{tenant}}}:model").port for tenant in tenants}
    assert len(holders) == 3  # the tenants really are spread over the 3 primaries
    assert sorted(store.tenant_ids()) == sorted(tenants)


def test_a_write_is_acknowledged_only_once_its_replica_has_it(
    make_store: MakeStore, redis_cluster: Any, redis_prefix: str
) -> None:
    """With the tenant's replica stalled, `wait_replicas=1` refuses to acknowledge; the default acknowledges a
    write the replica cannot have (what a failover right then would lose)."""
    waiting = make_store("cluster", wait_replicas=1, wait_timeout_ms=300)
    default = make_store("cluster")
    replica = redis_cluster.replica_of(redis_cluster.primary_for(f"{redis_prefix}:{{t1}}:model"))
    redis_cluster.freeze(replica)
    try:
        with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
            waiting.save("t1", b"x", META, SUPPORT)
        assert default.save("t1", b"y", META, SUPPORT) == 2
    finally:
        redis_cluster.thaw(replica)
    assert waiting.save("t1", b"z", META, SUPPORT) == 3  # the replica caught up


def test_a_write_waits_for_its_replica(make_store: MakeStore) -> None:
    """`wait_replicas=1`: acknowledged once the tenant's replica has it; asking for more replicas than exist is a
    `StoreUnavailable` after the timeout (the write happened on the primary but is not confirmed)."""
    store = make_store("cluster", wait_replicas=1, wait_timeout_ms=2000)
    assert store.save("t1", b"x", META, SUPPORT) == 1
    assert store.add_unlabeled("t1", ["a"], 10) == PoolUpdate(added=1, repeated=0, dropped=0, size=1)
    assert store.clear_unlabeled("t1") == 1
    assert store.rollback("t1", 1) == 2 and store.delete("t1") is True
    assert store.add_unlabeled("t1", ["a"], 10) is None  # nothing written: nothing to confirm
    greedy = make_store("cluster", wait_replicas=2, wait_timeout_ms=100)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="1 of 2 replicas"):
        greedy.save("t2", b"x", META, SUPPORT)
    assert time.monotonic() - started < 2


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


def test_unreachable_cluster_raises_store_unavailable() -> None:
    from harness.ports import free_port

    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        RedisStore(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}", timeout_s=0.5)
    assert time.monotonic() - started < 10


def test_unlabeled_pool_keeps_distinct_texts_newest_first(store: TenantStore) -> None:
    store.save("t1", b"x", META, SUPPORT)
    assert store.unlabeled("t1") == []
    assert store.add_unlabeled("t1", ["a", "b", "c"], 10) == PoolUpdate(added=3, repeated=0, dropped=0, size=3)
    assert store.add_unlabeled("t1", ["a", "d", "d"], 10) == PoolUpdate(added=1, repeated=2, dropped=0, size=4)
    assert store.unlabeled("t1") == ["d", "a", "c", "b"]  # a repeated text becomes the newest
    assert store.unlabeled("t1", limit=2) == ["d", "a"]
    assert store.unlabeled("t1", limit=0) == []
    assert store.add_unlabeled("t1", [], 10) == PoolUpdate(added=0, repeated=0, dropped=0, size=4)


def test_unlabeled_pool_drops_its_oldest_texts_beyond_the_cap(store: TenantStore) -> None:
    store.save("t1", b"x", META, SUPPORT)
    store.add_unlabeled("t1", ["1", "2", "3"], 3)
    assert store.add_unlabeled("t1", ["1", "4", "5"], 3) == PoolUpdate(added=2, repeated=1, dropped=2, size=3)
    assert store.unlabeled("t1") == ["5", "4", "1"]
    assert store.unlabeled_size("t1") == 3
    assert store.add_unlabeled("t1", ["6"], 1) == PoolUpdate(added=1, repeated=0, dropped=3, size=1)
    assert store.unlabeled("t1") == ["6"] and store.unlabeled_size("t1") == 1


def test_unlabeled_pool_needs_a_current_model(store: TenantStore) -> None:
    assert store.add_unlabeled("nobody", ["a"], 10) is None
    assert store.unlabeled("nobody") == [] and store.clear_unlabeled("nobody") == 0
    assert store.unlabeled_size("nobody") == 0
    assert store.load("nobody") is None and store.tenant_ids() == []  # nothing written
    store.save("t1", b"x", META, SUPPORT)
    store.delete("t1")
    assert store.add_unlabeled("t1", ["a"], 10) is None
    assert store.unlabeled("t1") == []


def test_unlabeled_pool_lives_and_dies_with_the_tenant(store3: TenantStore) -> None:
    store3.save("t1", b"x", META, SUPPORT)
    store3.add_unlabeled("t1", ["a", "b"], 10)
    store3.save("t1", b"y", META, SUPPORT)
    assert store3.rollback("t1", 1) == 3
    assert store3.unlabeled("t1") == ["b", "a"]  # new versions keep the pool
    assert store3.delete("t1") is True
    assert store3.unlabeled("t1") == [] and store3.clear_unlabeled("t1") == 0
    store3.save("t1", b"z", META, SUPPORT)
    assert store3.unlabeled("t1") == []  # a new tenant under the same id starts with an empty pool


def test_clearing_the_unlabeled_pool_says_how_many_texts_it_held(store: TenantStore) -> None:
    store.save("t1", b"x", META, SUPPORT)
    store.save("t2", b"x", META, SUPPORT)
    store.add_unlabeled("t1", ["a", "b", "a"], 10)
    store.add_unlabeled("t2", ["c"], 10)
    assert store.clear_unlabeled("t1") == 2
    assert store.unlabeled("t1") == [] and store.clear_unlabeled("t1") == 0 and store.unlabeled_size("t1") == 0
    assert store.unlabeled("t2") == ["c"]  # tenants' pools are isolated
    assert store.add_unlabeled("t1", ["d"], 10) == PoolUpdate(added=1, repeated=0, dropped=0, size=1)


def test_unlabeled_texts_round_trip_as_given(store: TenantStore) -> None:
    texts = ["ünïcode ✓", "日本語のテキスト", "emoji 🙂", "  spaced  ", "", "a\nb", "Ünïcode ✓"]
    store.save("t1", b"x", META, SUPPORT)
    assert store.add_unlabeled("t1", texts, 100) == PoolUpdate(added=7, repeated=0, dropped=0, size=7)
    assert store.unlabeled("t1") == texts[::-1]


@pytest.mark.parametrize("kind", KINDS)
def test_ttl_expires_the_unlabeled_pool_with_the_tenant(kind: str, make_store: MakeStore) -> None:
    store = make_store(kind, ttl_s=1)
    store.save("t1", b"x", META, SUPPORT)
    store.add_unlabeled("t1", ["a"], 10)
    time.sleep(1.3)
    assert store.unlabeled("t1") == []
    assert store.add_unlabeled("t1", ["b"], 10) is None
    store.save("t1", b"y", META, SUPPORT)
    assert store.unlabeled("t1") == []


def test_redis_unlabeled_pool_is_a_third_key_that_shares_the_model_ttl(
    make_store: MakeStore, redis_prefix: str
) -> None:
    store = make_store("redis", ttl_s=100)
    assert isinstance(store, RedisStore)
    client, tenant = store._client, f"{redis_prefix}:{{t1}}"
    store.save("t1", b"x", META, SUPPORT)
    client.pexpire(f"{tenant}:model", 50_000)
    store.add_unlabeled("t1", ["a"], 10)
    assert stored_keys(store, redis_prefix) == [f"{tenant}:model", f"{tenant}:seq", f"{tenant}:unlabeled"]
    assert 0 < client.pttl(f"{tenant}:unlabeled") <= 50_000  # the model's remaining TTL, not a fresh one
    store.save("t1", b"y", META, SUPPORT)
    assert 50_000 < client.pttl(f"{tenant}:unlabeled") <= 100_000  # refreshed with the model's
    client.persist(f"{tenant}:model")
    store.add_unlabeled("t1", ["b"], 10)
    assert client.pttl(f"{tenant}:unlabeled") == -1
    store.delete("t1")
    assert stored_keys(store, redis_prefix) == [f"{tenant}:seq"]


@pytest.fixture(params=KINDS)
def store3(request: pytest.FixtureRequest, make_store: MakeStore) -> TenantStore:
    """Stores that keep the last 3 versions."""
    return make_store(request.param, keep_versions=3)


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


def test_redis_stores_each_version_once_with_compressed_support(any_redis_store: RedisStore, redis_prefix: str) -> None:
    texts = [f"please tell me where my card number {i} is, it has not arrived yet" for i in range(40)]
    support = [{"text": text, "label": "card"} for text in texts]
    head = bytes(range(256)) * 8
    any_redis_store.save("t1", head, META, support)
    client, key = any_redis_store._client, f"{redis_prefix}:{{t1}}:model"
    assert client.hmget(key, ["version", "versions"]) == [b"1", b"1"]  # a pointer, not a second copy
    assert len(client.hkeys(key)) == 5
    stored_support = client.hget(key, "1:support")
    assert len(stored_support) < 0.5 * sum(len(t) for t in texts)  # zlib'd JSON, not plain JSON
    assert any_redis_store.load_support("t1") == support and any_redis_store.load("t1").head == head


def test_redis_refuses_a_support_value_that_is_not_zlibd(any_redis_store: RedisStore, redis_prefix: str) -> None:
    """Support sets are stored zlib'd; a plain JSON support value is refused (no release ever wrote one)."""
    import json

    any_redis_store.save("t1", b"x", META, SUPPORT)
    any_redis_store._client.hset(f"{redis_prefix}:{{t1}}:model", "1:support", json.dumps(SUPPORT))
    assert any_redis_store.load_support("t1") is None


def test_redis_refuses_a_support_value_that_inflates_without_end(
    any_redis_store: RedisStore, redis_prefix: str
) -> None:
    import zlib

    any_redis_store.save("t1", b"x", META, SUPPORT)
    bomb = zlib.compress(b"[" + b" " * (80 << 20) + b"]", 9)
    any_redis_store._client.hset(f"{redis_prefix}:{{t1}}:model", "1:support", bomb)
    assert any_redis_store.load_support("t1") is None


def test_redis_stores_heads_zlibd_and_reads_them_back_exactly(any_redis_store: RedisStore, redis_prefix: str) -> None:
    import torch

    from app.store.redis import HEAD_ZLIB_MAGIC

    torch.manual_seed(0)
    head = (torch.randn(77, 384) * 20).round().clamp(-127, 127).to(torch.int8).numpy().tobytes()  # int8-row-like
    any_redis_store.save("t1", head, META | {"head_bytes": len(head)}, SUPPORT)
    stored = any_redis_store._client.hget(f"{redis_prefix}:{{t1}}:model", "1:head")
    assert stored.startswith(HEAD_ZLIB_MAGIC) and len(stored) < len(head)
    assert any_redis_store.load("t1").head == head and any_redis_store.load("t1", version=1).head == head
    assert any_redis_store.versions("t1")[0].head_bytes == len(head)  # the head's own size, not the stored one


@pytest.mark.parametrize("stored", ["bomb", "truncated"])
def test_redis_hands_back_a_head_that_does_not_inflate_as_stored(
    any_redis_store: RedisStore, redis_prefix: str, stored: str
) -> None:
    """It then fails the record's checksum like any corrupt head (the service rebuilds it, see tests/api)."""
    import zlib

    from app.store.redis import HEAD_ZLIB_MAGIC

    any_redis_store.save("t1", b"head" * 100, META, SUPPORT)
    key = f"{redis_prefix}:{{t1}}:model"
    if stored == "bomb":
        value = HEAD_ZLIB_MAGIC + zlib.compress(b"\0" * (80 << 20), 9)
    else:
        value = any_redis_store._client.hget(key, "1:head")[:-5]
    any_redis_store._client.hset(key, "1:head", value)
    assert any_redis_store.load("t1").head == value


@pytest.mark.parametrize(
    "error",
    [
        "CLUSTERDOWN The cluster is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "MASTERDOWN Link with MASTER is down",
    ],
)
def test_failover_and_resharding_replies_become_store_unavailable(error: str) -> None:
    """What redis-py raises for these replies (its own parser, not a stand-in) is a 503, never a 500."""
    from redis._parsers.base import BaseParser

    from app.store import redis_errors

    with pytest.raises(StoreUnavailable), redis_errors():
        raise BaseParser.parse_error(error)
