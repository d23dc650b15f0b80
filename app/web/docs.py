"""Offline API docs: Swagger UI and ReDoc served from the installed `fastapi-offline` wheel, never a CDN.

Also documents the bearer-key security scheme (always, so generated clients know it; with auth on every
non-public operation requires it, which gives /docs its "Authorize" button) and, on every non-public operation,
the errors the layers in front of the routes answer with (401/403 with auth on, 413, 429, 503).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

from app.web.gate import is_public
from app.web.page_headers import AssetFiles, secured

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"

_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_AUTH_ONLY = {"401", "403"}
_ACCESS_ERRORS = {
    "401": "Missing or unknown API key (`missing_api_key`, `invalid_api_key`).",
    "403": "The key may not touch this tenant (`forbidden_tenant`) or this endpoint (`admin_required`).",
    "413": "Request body too large (`payload_too_large`).",
    "429": "Rate limit exceeded (`rate_limited`); see `Retry-After`.",
    "503": "The tenant or key store is unreachable (`store_unavailable`).",
}
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`fsk_...`); admin keys manage keys under /admin/keys.",
}


def install_docs(app: FastAPI, auth_enabled: bool) -> None:
    """`/docs`, `/docs/oauth2-redirect`, `/redoc` and their assets, with the pages' security headers (Swagger UI
    keeps an authorized key in page memory only); the app must be built with docs_url=None."""
    app.mount(ASSETS_URL, AssetFiles(directory=ASSETS_DIR), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": False},
        )
        return secured(page)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return secured(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        return secured(page, script_made=True)  # ReDoc injects its styles and runs search in a blob: worker

    _document_access(app, auth_enabled)


def _document_access(app: FastAPI, auth_enabled: bool) -> None:
    """The bearer scheme; limit and store errors on every non-public operation; with auth on, its security
    requirement and 401/403 too."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = dict(BEARER_SCHEME)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if is_public(path):
                    if auth_enabled:
                        operation["security"] = []
                    continue
                if auth_enabled:
                    operation["security"] = [{"bearerAuth": []}]
                responses = operation.setdefault("responses", {})
                for status, description in _ACCESS_ERRORS.items():
                    if status in _AUTH_ONLY and not auth_enabled:
                        continue
                    responses.setdefault(status, {"description": description, "content": _ERROR_REF})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
