"""Helpers for reliability tests: small-limit settings and a real uvicorn server running in a thread."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.store import RedisStore
from app.web.app import create_app
from app.web.server import uvicorn_options
from harness.server_proc import serve_in_thread as harness_serve_in_thread


def redis_settings(redis_url: str, prefix: str, **values: Any) -> Settings:
    """Settings of a test server on a real Redis under `prefix`: no checkpoint, five inner steps, quiet logs, no
    `.env`; `values` on top."""
    base: dict[str, Any] = {
        "store": "redis",
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "checkpoint": "none",
        "inner_steps": 5,
        "log_level": "warning",
        "_env_file": None,
    }
    return Settings(**(base | values))


SMALL_LIMITS: dict[str, Any] = {
    "max_examples": 12,
    "max_labels": 4,
    "max_texts": 4,
    "max_text_chars": 64,
    "max_label_chars": 16,
    "max_top_k": 4,
}


def small_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    """Redis-backed settings with small request limits, so generated requests stay cheap."""
    return redis_settings(redis_url, prefix, **(SMALL_LIMITS | overrides))


@contextmanager
def serve_in_thread(app: FastAPI, settings: Settings) -> Iterator[str]:
    """Run `app` under a real uvicorn server (the options `fewshot serve` uses) on a free loopback port."""
    with harness_serve_in_thread(app, **uvicorn_options(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def module_app(redis_url: str, real_model: Any) -> Iterator[tuple[TestClient, RedisStore]]:
    """One app per module (its embedding cache makes repeated support sets cheap) and a store on its prefix."""
    prefix = f"fewshot-rel-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_url, prefix=prefix)
    try:
        with TestClient(create_app(small_settings(redis_url, prefix), model=real_model)) as client:
            yield client, store
    finally:
        for key in store._client.scan_iter(match=f"{prefix}:*"):
            store._client.delete(key)
        store.close()
