"""Every error leaves as `{"error": {"code", "message", "details"?}}` with a fitting status and a code from
`app.web.error_codes.ERROR_CODES`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.ml.work import WorkCancelled
from app.services.errors import ServiceError
from app.store.base import StoreUnavailable
from app.web import metrics

log = logging.getLogger("fewshot.api")

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
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(WorkCancelled)
    async def _work_cancelled(_: Request, exc: WorkCancelled) -> JSONResponse:
        # the client went away and its work stopped; the request context middleware counts it as 499
        return error_response(499, "client_disconnected", "the client disconnected; its work was stopped")

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        metrics.series(metrics.STORE_ERRORS, "tenant_store").inc()
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
