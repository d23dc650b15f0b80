"""`Client`: the synchronous client (one httpx connection pool, typed replies and errors, safe retries)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from fewshot_client import calls, models
from fewshot_client.errors import ConnectionFailed, error_from_response
from fewshot_client.retry import RetryPolicy, retryable_status, retryable_transport_error

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class Client:
    """`Client(base_url=..., api_key=...)`; the key defaults to `$FEWSHOT_API_KEY`, the URL to `$FEWSHOT_URL`.
    Use as a context manager (or call `close()`); `transport` is for tests."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=calls.default_url(base_url),
            headers=calls.auth_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: calls.Call) -> httpx.Response:
        """Send `call`, retrying when that is safe (fewshot_client.retry); a 2xx answer or a typed error."""
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, json=call.json)
            except httpx.TransportError as exc:
                if attempt + 1 < self.retry.max_attempts and retryable_transport_error(exc, call.replay_safe):
                    self._sleep(self.retry.backoff(attempt))
                    attempt += 1
                    continue
                raise ConnectionFailed(f"{call.method} {call.path}: {exc!r}") from exc
            if response.is_success:
                return response
            error = error_from_response(response)
            if attempt + 1 < self.retry.max_attempts and retryable_status(response, error.code, call.replay_safe):
                self._sleep(self.retry.wait_after_response(attempt, response))
                attempt += 1
                continue
            raise error

    def _json(self, call: calls.Call) -> Any:
        return self.send(call).json()

    def _typed(self, call: calls.Call, model: type[M]) -> M:
        return model.model_validate(self._json(call))

    # -- tenants
    def adapt(
        self,
        tenant_id: str,
        examples: Iterable[models.Example | Mapping[str, Any]],
        *,
        mode: str | None = None,
        expected_version: int | None = None,
        **options: Any,
    ) -> models.AdaptResponse:
        """POST /adapt (`mode="append"` adds to the stored support set; options such as `label_names=` and
        `unlabeled="auto" | "off"` go in the body); see also `append`."""
        call = calls.adapt(tenant_id, examples, mode=mode, expected_version=expected_version, **options)
        return self._typed(call, models.AdaptResponse)

    def append(
        self,
        tenant_id: str,
        examples: Iterable[models.Example | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        **options: Any,
    ) -> models.AdaptResponse:
        """POST /adapt with `mode: append`."""
        return self.adapt(tenant_id, examples, mode="append", expected_version=expected_version, **options)

    def predict(self, tenant_id: str, texts: list[str], **options: Any) -> models.PredictResponse:
        """POST /predict (`top_k`, `version`, `oos_threshold`, `label_threshold`, `explain`, `keep_unlabeled`)."""
        return self._typed(calls.predict(tenant_id, texts, **options), models.PredictResponse)

    def feedback(
        self,
        tenant_id: str,
        corrections: Iterable[models.Correction | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
    ) -> models.FeedbackResponse:
        """POST /tenants/{id}/feedback: corrected labels become examples of a new version."""
        return self._typed(calls.feedback(tenant_id, corrections, expected_version), models.FeedbackResponse)

    def tenants(self, limit: int | None = None, after: str | None = None) -> models.TenantList:
        """One page of tenant ids (sorted); `next_after` names the next page's `after`."""
        return self._typed(calls.Call("GET", calls.tenants_path(limit, after)), models.TenantList)

    def iter_tenants(self, page_size: int | None = None) -> Iterator[str]:
        """Every tenant id the key may access, following the server's pages."""
        after: str | None = None
        while True:
            listed = self.tenants(page_size, after)
            yield from listed.tenants
            if listed.next_after is None:
                return
            after = listed.next_after

    def tenant(self, tenant_id: str) -> models.TenantInfo:
        return self._typed(calls.Call("GET", calls.tenant_path(tenant_id)), models.TenantInfo)

    def versions(self, tenant_id: str) -> models.VersionList:
        return self._typed(calls.Call("GET", calls.tenant_path(tenant_id, "/versions")), models.VersionList)

    def iter_versions(self, tenant_id: str) -> Iterator[models.ModelSummary]:
        """The retained versions, newest first."""
        yield from self.versions(tenant_id).versions

    def rollback(self, tenant_id: str, version: int) -> models.RollbackResponse:
        return self._typed(calls.rollback(tenant_id, version), models.RollbackResponse)

    def delete(self, tenant_id: str) -> None:
        self.send(calls.Call("DELETE", calls.tenant_path(tenant_id)))

    def evaluate(
        self, tenant_id: str, *, version: int | None = None, examples: Iterable[Mapping[str, Any]] | None = None
    ) -> models.EvaluateResponse:
        return self._typed(calls.evaluate(tenant_id, version, examples), models.EvaluateResponse)

    def suggest(self, tenant_id: str, texts: list[str] | None = None, k: int | None = None) -> models.SuggestResponse:
        """POST /tenants/{id}/suggest: which texts to label next; without `texts`, from the unlabeled pool."""
        return self._typed(calls.suggest(tenant_id, texts, k), models.SuggestResponse)

    # -- unlabeled pool
    def add_unlabeled(self, tenant_id: str, texts: list[str]) -> models.UnlabeledResponse:
        """POST /tenants/{id}/unlabeled: keep texts in the tenant's bounded pool (the oldest go first)."""
        return self._typed(calls.add_unlabeled(tenant_id, texts), models.UnlabeledResponse)

    def unlabeled(self, tenant_id: str) -> models.PoolResponse:
        """GET /tenants/{id}/unlabeled: the pool's size and cap."""
        return self._typed(calls.Call("GET", calls.tenant_path(tenant_id, "/unlabeled")), models.PoolResponse)

    def clear_unlabeled(self, tenant_id: str) -> models.PoolCleared:
        """DELETE /tenants/{id}/unlabeled: empty the pool."""
        return self._typed(calls.Call("DELETE", calls.tenant_path(tenant_id, "/unlabeled")), models.PoolCleared)

    # -- server
    def encoders(self) -> models.EncoderList:
        return self._typed(calls.Call("GET", "/encoders"), models.EncoderList)

    def health(self) -> models.Health:
        return self._typed(calls.Call("GET", "/healthz"), models.Health)
