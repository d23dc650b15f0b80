"""`AsyncClient`: the asynchronous client (one httpx connection pool, typed replies and errors, safe retries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from fewshot_client import calls, models
from fewshot_client.errors import ConnectionFailed, error_from_response
from fewshot_client.retry import RetryPolicy, retryable_status, retryable_transport_error

M = TypeVar("M", bound=BaseModel)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class AsyncClient:
    """`AsyncClient(base_url=..., api_key=...)`; the key defaults to `$FEWSHOT_API_KEY`, the URL to `$FEWSHOT_URL`.
    Use as an async context manager (or await `close()`); `transport` is for tests."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=calls.default_url(base_url),
            headers=calls.auth_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, call: calls.Call) -> httpx.Response:
        """Send `call`, retrying when that is safe (fewshot_client.retry); a 2xx answer or a typed error."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, json=call.json)
            except httpx.TransportError as exc:
                if attempt + 1 < self.retry.max_attempts and retryable_transport_error(exc, call.replay_safe):
                    await self._sleep(self.retry.backoff(attempt))
                    attempt += 1
                    continue
                raise ConnectionFailed(f"{call.method} {call.path}: {exc!r}") from exc
            if response.is_success:
                return response
            error = error_from_response(response)
            if attempt + 1 < self.retry.max_attempts and retryable_status(response, error.code, call.replay_safe):
                await self._sleep(self.retry.wait_after_response(attempt, response))
                attempt += 1
                continue
            raise error

    async def _json(self, call: calls.Call) -> Any:
        return (await self.send(call)).json()

    async def _typed(self, call: calls.Call, model: type[M]) -> M:
        return model.model_validate(await self._json(call))

    # -- tenants
    async def adapt(
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
        return await self._typed(call, models.AdaptResponse)

    async def append(
        self,
        tenant_id: str,
        examples: Iterable[models.Example | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        **options: Any,
    ) -> models.AdaptResponse:
        """POST /adapt with `mode: append`."""
        return await self.adapt(tenant_id, examples, mode="append", expected_version=expected_version, **options)

    async def predict(self, tenant_id: str, texts: list[str], **options: Any) -> models.PredictResponse:
        """POST /predict (`top_k`, `version`, `oos_threshold`, `label_threshold`, `explain`, `keep_unlabeled`)."""
        return await self._typed(calls.predict(tenant_id, texts, **options), models.PredictResponse)

    async def feedback(
        self,
        tenant_id: str,
        corrections: Iterable[models.Correction | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
    ) -> models.FeedbackResponse:
        """POST /tenants/{id}/feedback: corrected labels become examples of a new version."""
        return await self._typed(calls.feedback(tenant_id, corrections, expected_version), models.FeedbackResponse)

    async def tenants(self, limit: int | None = None, after: str | None = None) -> models.TenantList:
        """One page of tenant ids (sorted); `next_after` names the next page's `after`."""
        return await self._typed(calls.Call("GET", calls.tenants_path(limit, after)), models.TenantList)

    async def iter_tenants(self, page_size: int | None = None) -> AsyncIterator[str]:
        """Every tenant id the key may access, following the server's pages."""
        after: str | None = None
        while True:
            listed = await self.tenants(page_size, after)
            for tenant_id in listed.tenants:
                yield tenant_id
            if listed.next_after is None:
                return
            after = listed.next_after

    async def tenant(self, tenant_id: str) -> models.TenantInfo:
        return await self._typed(calls.Call("GET", calls.tenant_path(tenant_id)), models.TenantInfo)

    async def versions(self, tenant_id: str) -> models.VersionList:
        return await self._typed(calls.Call("GET", calls.tenant_path(tenant_id, "/versions")), models.VersionList)

    async def iter_versions(self, tenant_id: str) -> AsyncIterator[models.ModelSummary]:
        """The retained versions, newest first."""
        for version in (await self.versions(tenant_id)).versions:
            yield version

    async def rollback(self, tenant_id: str, version: int) -> models.RollbackResponse:
        return await self._typed(calls.rollback(tenant_id, version), models.RollbackResponse)

    async def delete(self, tenant_id: str) -> None:
        await self.send(calls.Call("DELETE", calls.tenant_path(tenant_id)))

    async def evaluate(
        self, tenant_id: str, *, version: int | None = None, examples: Iterable[Mapping[str, Any]] | None = None
    ) -> models.EvaluateResponse:
        return await self._typed(calls.evaluate(tenant_id, version, examples), models.EvaluateResponse)

    async def suggest(
        self, tenant_id: str, texts: list[str] | None = None, k: int | None = None
    ) -> models.SuggestResponse:
        """POST /tenants/{id}/suggest: which texts to label next; without `texts`, from the unlabeled pool."""
        return await self._typed(calls.suggest(tenant_id, texts, k), models.SuggestResponse)

    # -- unlabeled pool
    async def add_unlabeled(self, tenant_id: str, texts: list[str]) -> models.UnlabeledResponse:
        """POST /tenants/{id}/unlabeled: keep texts in the tenant's bounded pool (the oldest go first)."""
        return await self._typed(calls.add_unlabeled(tenant_id, texts), models.UnlabeledResponse)

    async def unlabeled(self, tenant_id: str) -> models.PoolResponse:
        """GET /tenants/{id}/unlabeled: the pool's size and cap."""
        return await self._typed(calls.Call("GET", calls.tenant_path(tenant_id, "/unlabeled")), models.PoolResponse)

    async def clear_unlabeled(self, tenant_id: str) -> models.PoolCleared:
        """DELETE /tenants/{id}/unlabeled: empty the pool."""
        return await self._typed(calls.Call("DELETE", calls.tenant_path(tenant_id, "/unlabeled")), models.PoolCleared)

    # -- server
    async def encoders(self) -> models.EncoderList:
        return await self._typed(calls.Call("GET", "/encoders"), models.EncoderList)

    async def health(self) -> models.Health:
        return await self._typed(calls.Call("GET", "/healthz"), models.Health)
