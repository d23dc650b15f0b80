"""Typed errors: one class per family of the server's error envelope `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from typing import Any

import httpx


class FewshotError(Exception):
    """Any failed call. `status` is the HTTP status (None: no answer), `code` the server's machine-readable code,
    `detail` its message, `details` its per-field list (validation errors)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: list[Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status is not None else message)
        self.status = status
        self.code = code
        self.detail = message
        self.details = details or []
        self.headers = headers if headers is not None else httpx.Headers()


class InvalidRequest(FewshotError):
    """400, 413, 422, 431: the request itself is wrong (`code` says how); retrying it cannot help."""


class Unauthorized(FewshotError):
    """401: no key, or an unknown or revoked one."""


class Forbidden(FewshotError):
    """403: the key may not touch this tenant (`forbidden_tenant`) or the endpoint needs an admin key."""


class NotFound(FewshotError):
    """404: unknown tenant, version, key or path."""


class Conflict(FewshotError):
    """409: another write got in first (`concurrent_update`, a stale `expected_version`) or the tenant's state
    forbids the call (`task_mismatch`, `encoder_mismatch`, `model_unusable`, ...)."""


class RateLimited(FewshotError):
    """429 after the last attempt; `retry_after` is the server's `Retry-After` in seconds, if given."""

    @property
    def retry_after(self) -> float | None:
        from fewshot_client.retry import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(FewshotError):
    """5xx after the last attempt (503 `store_unavailable` / `overloaded`, 500 `internal_error`)."""


class ConnectionFailed(FewshotError):
    """No HTTP answer: the connection failed or broke (after the last attempt where retrying was safe)."""


_BY_STATUS: dict[int, type[FewshotError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    431: InvalidRequest,
}


def error_from_response(response: httpx.Response) -> FewshotError:
    """The typed error for a non-2xx answer, from the error envelope when there is one."""
    code: str | None = None
    message = response.reason_phrase or "error"
    details: list[Any] | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        message = str(error.get("message", message))
        details = error.get("details")
    status = response.status_code
    family = _BY_STATUS.get(status, ServerError if status >= 500 else FewshotError)
    return family(message, status=status, code=code, details=details, headers=response.headers)
