"""The client's unlabeled pool against a real server (uvicorn, real encoder, real Redis, API keys on): adding texts,
the pool's size, /suggest from the pool, clearing it, /adapt's `unlabeled` switch, typed errors; sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fewshot_client import AsyncClient, Client, InvalidRequest, NotFound, calls

from tests.client.conftest import ADMIN_KEY, SUPPORT, live_server

POOL = ["card still not here", "what rate do you use for yen", "can I get my money back", "is my card lost"]


@pytest.fixture
def client(server: str) -> Client:
    with Client(server, api_key=ADMIN_KEY) as c:
        yield c


def test_calls_for_the_pool() -> None:
    added = calls.add_unlabeled("acme", ["a", "b"])
    assert (added.method, added.path, added.json, added.replay_safe) == (
        "POST",
        "/tenants/acme/unlabeled",
        {"texts": ["a", "b"]},
        True,  # a set: a replay only marks the same texts newest again
    )
    from_pool = calls.suggest("acme", None, 5)
    assert from_pool.json == {"k": 5} and from_pool.replay_safe
    assert calls.suggest("acme", ["x"], None).json == {"texts": ["x"]}
    assert calls.adapt("acme", SUPPORT, unlabeled="off").json["unlabeled"] == "off"


def test_pool_add_size_suggest_clear(client: Client, tenant: str) -> None:
    client.adapt(tenant, SUPPORT)
    added = client.add_unlabeled(tenant, [*POOL, POOL[0]])  # one text twice: counted once
    assert (added.tenant_id, added.added, added.repeated, added.dropped, added.size) == (tenant, 4, 1, 0, 4)
    again = client.add_unlabeled(tenant, POOL[:2])
    assert (again.added, again.repeated, again.size) == (0, 2, 4)
    pool = client.unlabeled(tenant)
    assert pool.size == 4 and pool.max_texts == added.max_texts > 0

    suggested = client.suggest(tenant, k=2)
    assert suggested.source == "unlabeled" and suggested.pool_size == 4 and len(suggested.suggestions) == 2
    assert {s.text for s in suggested.suggestions} <= set(POOL)
    assert client.suggest(tenant, ["where is my card"], k=1).source == "request"

    off = client.adapt(tenant, SUPPORT, unlabeled="off")
    assert off.unlabeled is not None and off.unlabeled.mode == "off" and not off.unlabeled.used

    cleared = client.clear_unlabeled(tenant)
    assert cleared.tenant_id == tenant and cleared.removed == 4
    assert client.unlabeled(tenant).size == 0
    assert client.predict(tenant, POOL[:2], keep_unlabeled=True).unlabeled_pool_size == 2  # traffic kept on the way


def test_pool_errors_are_typed(client: Client, tenant: str) -> None:
    with pytest.raises(NotFound) as unknown:
        client.add_unlabeled(tenant, POOL)
    assert unknown.value.status == 404 and unknown.value.code == "unknown_tenant"
    for call in (client.unlabeled, client.clear_unlabeled):
        with pytest.raises(NotFound) as missing:
            call(tenant)
        assert missing.value.code == "unknown_tenant"
    client.adapt(tenant, SUPPORT)
    with pytest.raises(InvalidRequest) as empty:
        client.add_unlabeled(tenant, ["fine", "  "])
    assert empty.value.status == 422 and empty.value.code == "empty_text"
    with pytest.raises(InvalidRequest) as none:
        client.add_unlabeled(tenant, [])
    assert none.value.code == "no_texts"
    assert client.unlabeled(tenant).size == 0  # a refused request keeps nothing


def test_the_pool_is_bounded_oldest_first(redis_url: str, real_model: Any, tenant: str) -> None:
    with live_server(redis_url, real_model, max_unlabeled=3) as url, Client(url, api_key=ADMIN_KEY) as client:
        client.adapt(tenant, SUPPORT)
        first = client.add_unlabeled(tenant, POOL[:3])
        assert (first.size, first.max_texts, first.dropped) == (3, 3, 0)
        more = client.add_unlabeled(tenant, POOL[3:])
        assert (more.added, more.dropped, more.size) == (1, 1, 3)
        suggested = client.suggest(tenant, k=3)
        assert POOL[0] not in {s.text for s in suggested.suggestions}  # the oldest went first


def test_async_pool(server: str, tenant: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(server, api_key=ADMIN_KEY) as client:
            with pytest.raises(NotFound) as unknown:
                await client.add_unlabeled(tenant, POOL)
            assert unknown.value.code == "unknown_tenant"
            await client.adapt(tenant, SUPPORT)
            added = await client.add_unlabeled(tenant, POOL)
            assert (added.added, added.repeated, added.size) == (4, 0, 4)
            assert (await client.unlabeled(tenant)).size == 4
            suggested = await client.suggest(tenant, k=3)
            assert suggested.source == "unlabeled" and len(suggested.suggestions) == 3
            off = await client.adapt(tenant, SUPPORT, unlabeled="off")
            assert off.unlabeled is not None and off.unlabeled.mode == "off"
            assert (await client.clear_unlabeled(tenant)).removed == 4
            assert (await client.unlabeled(tenant)).size == 0

    asyncio.run(scenario())
