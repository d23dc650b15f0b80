"""Shared fixtures: a real Redis (and a real Redis Cluster, started lazily once per session), the real encoder
(loaded once), a tiny random encoder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.bootstrap import load_model
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.loading import LoadedModel
from app.store import RedisStore
from harness.redis_cluster import LocalCluster, local_cluster
from tests.redis_server import delete_prefix, test_redis_url, whole_suite_on_cluster
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A local 3-primary, 3-replica Redis Cluster shared by the session (started on first use, ~3 s)."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The single test Redis, or the session's cluster with `FEWSHOT_TEST_REDIS=cluster`."""
    if whole_suite_on_cluster():
        yield request.getfixturevalue("redis_cluster").url
        return
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
    delete_prefix(store._client, redis_prefix)
    store.close()


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings(checkpoint="none", encoder_precision="float32", _env_file=None)  # exact-match tests


@pytest.fixture(scope="session")
def real_model(base_settings: Settings) -> LoadedModel:
    """The real all-MiniLM-L6-v2, loaded once for the whole session (base weights, no checkpoint)."""
    return load_model(base_settings)


@pytest.fixture(scope="session")
def tiny_encoder() -> SentenceEncoder:
    """A 2-layer, 32-dim random BERT with the real tokenizer: fast unit tests."""
    return build_tiny_encoder(packaged_tokenizer())
