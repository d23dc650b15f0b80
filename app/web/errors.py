"""Every error leaves as `{"error": {"code", "message", "details"?}}` with a fitting status.

`ERROR_CODES` is the documented list of every code the server itself can answer with (a test checks that each
code in the source is listed, and the README's error table is this list).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.services.errors import ServiceError
from app.store.base import StoreUnavailable
from app.web import metrics

log = logging.getLogger("fewshot.api")

ERROR_CODES: dict[str, tuple[int, str]] = {
    # request shape (any route)
    "invalid_json": (422, "The body is not a JSON object, not UTF-8, or nests too deep."),
    "validation_error": (422, "A field is missing, of the wrong type (strict: no string numbers) or out of range."),
    "invalid_tenant_id": (422, "A tenant id is not 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit."),
    # /adapt and /predict content
    "too_few_labels": (422, "Fewer than 2 labels."),
    "too_many_labels": (422, "More labels than `max_labels`."),
    "too_many_examples": (422, "More examples than `max_examples`."),
    "too_many_texts": (422, "More texts than `max_texts`."),
    "no_texts": (422, "/predict without texts."),
    "empty_text": (422, "A text that is empty (or only whitespace or invisible characters)."),
    "empty_label": (422, "A label that is empty (or only whitespace or invisible characters)."),
    "invalid_text": (422, "A text or label that cannot be encoded as UTF-8 (e.g. a lone surrogate)."),
    "text_too_long": (422, "A text longer than `max_text_chars`."),
    "label_too_long": (422, "A label longer than `max_label_chars`."),
    "duplicate_label": (422, "A label declared twice."),
    "undeclared_label": (422, "An example's label is not in the declared `labels`."),
    "label_without_examples": (422, "A declared label with no example or description."),
    "unknown_label": (422, "A label to remove or describe that the tenant does not have."),
    "invalid_option": (422, "An option that does not apply (e.g. `remove_labels` without `mode: append`)."),
    "invalid_top_k": (422, "`top_k` outside 1..`max_top_k`."),
    # tenants and keys
    "unknown_tenant": (404, "The tenant has no model."),
    "unknown_version": (404, "The version is not retained."),
    "unknown_key": (404, "No API key with this id."),
    "not_found": (404, "No such path."),
    "method_not_allowed": (405, "The path does not take this method."),
    "concurrent_update": (409, "Another write changed the tenant first; retry."),
    "model_unusable": (409, "The stored model cannot be used or repaired."),
    # access and limits
    "missing_api_key": (401, "No `Authorization: Bearer <key>`."),
    "invalid_api_key": (401, "Unknown or revoked API key."),
    "forbidden_tenant": (403, "The key may not touch this tenant."),
    "admin_required": (403, "The endpoint needs an admin key."),
    "rate_limited": (429, "Rate limit exceeded; see `Retry-After`."),
    "payload_too_large": (413, "Body larger than `max_body_bytes`."),
    # the HTTP connection (answered by the server before or instead of the app)
    "bad_request": (400, "Malformed HTTP request."),
    "request_timeout": (408, "The whole request did not arrive within `request_timeout_s`."),
    "headers_too_large": (431, "Request line and headers larger than 16 KiB."),
    "client_disconnected": (499, "The client went away before its request was read (logs and metrics only)."),
    # the server
    "store_unavailable": (503, "Redis (tenants or keys) is unreachable; retry shortly."),
    "overloaded": (503, "More concurrent connections or requests than `limit_concurrency`; retry shortly."),
    "internal_error": (500, "An unexpected error (logged with the request id)."),
}

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


def _validation_code(errors: list[dict[str, Any]]) -> str:
    if any(error.get("type") == "json_invalid" for error in errors):
        return "invalid_json"
    if any(error.get("loc") == ["body"] and error.get("type") == "model_attributes_type" for error in errors):
        return "invalid_json"  # a body that is not a JSON object (or not JSON at all)
    if any("tenant_id" in error.get("loc", ()) for error in errors):
        return "invalid_tenant_id"
    if any("tenants" in error.get("loc", ()) and error.get("type") == "string_pattern_mismatch" for error in errors):
        return "invalid_tenant_id"  # an admin key scope naming an invalid tenant id
    return "validation_error"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        metrics.STORE_ERRORS.labels(source="tenant_store").inc()
        log.warning("store unavailable: %s", exc)
        return error_response(503, "store_unavailable", "the tenant store is unreachable; retry shortly")

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(error.get("loc", ())), "msg": str(error.get("msg")), "type": str(error.get("type"))}
            for error in exc.errors()
        ]
        code = _validation_code(errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return error_response(422, code, f"{where}: {first['msg']}", errors)

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnected(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # nobody reads this answer; the request context middleware counts and logs the request as 499
        return error_response(499, "client_disconnected", "the client disconnected before its request was read")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI: body not UTF-8 JSON, or too deep
            return error_response(422, "invalid_json", "the body is not valid UTF-8 JSON (or nests too deep)")
        code = _HTTP_CODES.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "bad_request")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
