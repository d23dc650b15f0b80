"""Apps wired to the real encoder and a real Redis (fresh key prefix per test): `client` with auth off,
`make_client(**settings)` with auth on (the bootstrap admin key ADMIN_KEY) unless overridden."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app

ADMIN_KEY = "fsk_test-admin-key-0123456789abcdef"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN = bearer(ADMIN_KEY)

CARDS = ["my card has not arrived yet", "when will my new card get here", "still waiting for the card"]
FX = ["what is the euro exchange rate", "how much is a dollar in pounds", "currency conversion rate today"]
REFUND = ["I want my money back", "please refund this purchase", "how do I get a refund"]


def capture_logs() -> io.StringIO:
    """Point the log handler that app.web.logs installed at a buffer, and return the buffer."""
    buffer = io.StringIO()
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_fewshot_handler", False)]
    assert len(handlers) == 1
    handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    return buffer


def assert_error(response: Any, status: int, code: str) -> None:
    """An error reply: this status, the JSON envelope with this code and a message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def support(*groups: tuple[str, list[str]]) -> list[dict[str, str]]:
    return [{"text": text, "label": label} for label, texts in groups for text in texts]


SUPPORT = support(("card_arrival", CARDS), ("exchange_rate", FX), ("refund", REFUND))
TICKETS = [  # a small multi-label support set: two labels, one text with both, one negative
    {"text": "I was charged twice", "labels": ["billing"]},
    {"text": "refund my payment", "labels": ["billing"]},
    {"text": "the app crashes on start", "labels": ["bug"]},
    {"text": "the export throws an error", "labels": ["bug"]},
    {"text": "charged twice and the app crashed", "labels": ["billing", "bug"]},
    {"text": "thanks a lot", "labels": []},
]


@pytest.fixture
def settings(redis_url: str, redis_prefix: str) -> Settings:
    return Settings(
        store="redis",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        checkpoint="none",
        max_examples=50,
        max_labels=10,
        max_texts=8,
        max_text_chars=200,
        _env_file=None,
    )


@pytest.fixture
def client(settings: Settings, real_model, redis_store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, model=real_model)) as test_client:
        yield test_client


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
