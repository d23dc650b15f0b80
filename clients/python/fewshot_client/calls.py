"""One `Call` per API operation: method, path, body and whether replaying it is safe. The sync and async clients
send the same calls."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fewshot_client import models

API_KEY_ENV = "FEWSHOT_API_KEY"
URL_ENV = "FEWSHOT_URL"
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    replay_safe: bool = True  # idempotent, or a write guarded by expected_version


def tenants_path(limit: int | None, after: str | None) -> str:
    """`GET /tenants` with its page parameters."""
    query = {k: str(v) for k, v in (("limit", limit), ("after", after)) if v is not None}
    return f"/tenants?{urlencode(query)}" if query else "/tenants"


def default_url(url: str | None) -> str:
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def auth_headers(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer <key>` from the argument, else `$FEWSHOT_API_KEY`; none when neither is set."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


def tenant_path(tenant_id: str, suffix: str = "") -> str:
    return f"/tenants/{quote(tenant_id, safe='')}{suffix}"


def examples_of(examples: Iterable[models.Example | Mapping[str, Any]]) -> list[models.Example]:
    return [e if isinstance(e, models.Example) else models.Example.model_validate(e) for e in examples]


def adapt(
    tenant_id: str,
    examples: Iterable[models.Example | Mapping[str, Any]],
    *,
    mode: str | None = None,
    expected_version: int | None = None,
    **options: Any,
) -> Call:
    request = models.AdaptRequest(
        tenant_id=tenant_id, examples=examples_of(examples), mode=mode, expected_version=expected_version, **options
    )
    return Call("POST", "/adapt", request.body(), replay_safe=expected_version is not None)


def predict(tenant_id: str, texts: list[str], **options: Any) -> Call:
    return Call("POST", "/predict", models.PredictRequest(tenant_id=tenant_id, texts=texts, **options).body())


def predict_body(tenant_id: str, texts: list[str], top_k: int | None, explain: int | None = None) -> Call:
    """/predict without pydantic validation (the batch classifier's hot path)."""
    body: dict[str, Any] = {"tenant_id": tenant_id, "texts": texts}
    if top_k is not None:
        body["top_k"] = top_k
    if explain:
        body["explain"] = explain
    return Call("POST", "/predict", body)


def feedback(
    tenant_id: str, corrections: Iterable[models.Correction | Mapping[str, Any]], expected_version: int | None
) -> Call:
    items = [c if isinstance(c, models.Correction) else models.Correction.model_validate(c) for c in corrections]
    body = models.FeedbackRequest(corrections=items, expected_version=expected_version).body()
    return Call("POST", tenant_path(tenant_id, "/feedback"), body, replay_safe=expected_version is not None)


def rollback(tenant_id: str, version: int) -> Call:
    body = models.RollbackRequest(version=version).body()
    return Call("POST", tenant_path(tenant_id, "/rollback"), body, replay_safe=False)


def evaluate(tenant_id: str, version: int | None, examples: Iterable[Mapping[str, Any]] | None) -> Call:
    request = models.EvaluateRequest(version=version, examples=None if examples is None else examples_of(examples))
    return Call("POST", tenant_path(tenant_id, "/evaluate"), request.body())


def suggest(tenant_id: str, texts: list[str] | None, k: int | None) -> Call:
    """Without `texts` the server picks from the tenant's unlabeled pool."""
    return Call("POST", tenant_path(tenant_id, "/suggest"), models.SuggestRequest(texts=texts, k=k).body())


def add_unlabeled(tenant_id: str, texts: list[str]) -> Call:
    """Replay-safe: the pool is a set, a replay only marks the same texts newest again."""
    body = models.UnlabeledRequest(texts=texts).body()
    return Call("POST", tenant_path(tenant_id, "/unlabeled"), body)
