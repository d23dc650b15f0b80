"""Shared fixtures: a real Redis, the real encoder (loaded once), a tiny random encoder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.bootstrap import load_model
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.store import RedisStore
from tests.redis_server import test_redis_url
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

ModelBundle = tuple[SentenceEncoder, InnerLoopParams, str | None]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with test_redis_url() as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """A fresh key namespace per test, so a shared Redis is never polluted."""
    return f"fewshot-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    client = store._client
    for key in client.scan_iter(match=f"{redis_prefix}:*"):
        client.delete(key)
    store.close()


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings(checkpoint="none", encoder_precision="float32", _env_file=None)  # exact-match tests


@pytest.fixture(scope="session")
def real_model(base_settings: Settings) -> ModelBundle:
    """The real all-MiniLM-L6-v2, loaded once for the whole session (base weights, no checkpoint)."""
    return load_model(base_settings)


@pytest.fixture(scope="session")
def tiny_encoder() -> SentenceEncoder:
    """A 2-layer, 32-dim random BERT with the real tokenizer: fast unit tests."""
    return build_tiny_encoder(packaged_tokenizer())
