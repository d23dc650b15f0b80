"""An app wired to the real encoder and a real Redis (fresh key prefix per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

CARDS = ["my card has not arrived yet", "when will my new card get here", "still waiting for the card"]
FX = ["what is the euro exchange rate", "how much is a dollar in pounds", "currency conversion rate today"]
REFUND = ["I want my money back", "please refund this purchase", "how do I get a refund"]


def support(*groups: tuple[str, list[str]]) -> list[dict[str, str]]:
    return [{"text": text, "label": label} for label, texts in groups for text in texts]


SUPPORT = support(("card_arrival", CARDS), ("exchange_rate", FX), ("refund", REFUND))


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
