"""A real server for the client tests: the app under uvicorn in a thread, the real encoder, a real Redis (a fresh
key prefix per module) and API keys on (the bootstrap admin key ADMIN_KEY)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.config import Settings
from app.store import RedisStore
from app.web.app import create_app
from tests.redis_server import delete_prefix
from tests.reliability.conftest import redis_settings, serve_in_thread
from tests.web.conftest import ADMIN_KEY, SUPPORT

__all__ = ["ADMIN_KEY", "SUPPORT", "live_server"]


def client_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"auth_enabled": True, "admin_key": ADMIN_KEY, "max_texts": 64}
    return redis_settings(redis_url, prefix, **(values | overrides))


@contextmanager
def live_server(redis_url: str, real_model: Any, **overrides: Any) -> Iterator[str]:
    """A served app on its own Redis prefix (removed afterwards); yields the base URL."""
    prefix = f"fewshot-client-{uuid.uuid4().hex[:8]}"
    settings = client_settings(redis_url, prefix, **overrides)
    store = RedisStore(redis_url, prefix=prefix)
    try:
        with serve_in_thread(create_app(settings, model=real_model), settings) as url:
            yield url
    finally:
        delete_prefix(store._client, prefix)
        store.close()


@pytest.fixture(scope="module")
def server(redis_url: str, real_model: Any) -> Iterator[str]:
    """One auth-on server per test module."""
    with live_server(redis_url, real_model) as url:
        yield url


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"
