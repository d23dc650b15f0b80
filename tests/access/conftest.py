"""Apps with authentication on, backed by the real encoder and a real Redis (fresh key prefix per test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

ADMIN_KEY = "fsk_test-admin-key-0123456789abcdef"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def make_client(real_model, redis_url: str, redis_prefix: str, redis_store) -> Iterator[Callable[..., TestClient]]:
    """`make_client(**settings)`: a started TestClient; auth on with ADMIN_KEY unless overridden."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            values: dict[str, Any] = {
                "store": "redis",
                "redis_url": redis_url,
                "redis_prefix": redis_prefix,
                "checkpoint": "none",
                "inner_steps": 5,
                "auth_enabled": True,
                "admin_key": ADMIN_KEY,
                "_env_file": None,
            }
            values.update(overrides)
            return stack.enter_context(TestClient(create_app(Settings(**values), model=real_model)))

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
