"""The HTML pages (/docs, its OAuth2 redirect, /redoc, /console) and their assets carry the security headers; the
docs page keeps the API key in page memory only."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from fastapi.testclient import TestClient

PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc", "/console")
ASSETS = (
    "/docs-assets/swagger-ui-bundle.js",
    "/docs-assets/swagger-ui.css",
    "/docs-assets/redoc.standalone.js",
    "/console-assets/console.js",
    "/console-assets/console.css",
)


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def test_every_page_sends_a_restrictive_policy(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        policy = directives(response.headers["content-security-policy"])
        assert policy["default-src"] == ["'self'"], path
        assert policy["script-src"][0] == "'self'", path
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "blob:"} & set(policy["script-src"]), path
        assert policy["img-src"] == ["'self'", "data:"] and policy["connect-src"] == ["'self'"], path
        assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"], path
        assert policy["form-action"] == ["'self'"] and policy["object-src"] == ["'none'"], path
    console = directives(client.get("/console").headers["content-security-policy"])
    assert console["script-src"] == ["'self'"] and console["style-src"] == ["'self'"]


def test_inline_scripts_run_only_by_their_hash(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for path in PAGES:
        response = client.get(path)
        allowed = set(directives(response.headers["content-security-policy"])["script-src"])
        for body in re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in allowed, path


def test_static_assets_are_never_sniffed(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for path in ASSETS:
        response = client.get(path)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff", path


def test_the_docs_page_does_not_persist_the_key(make_client: Callable[..., TestClient]) -> None:
    page = make_client().get("/docs").text
    assert '"persistAuthorization": false' in page
    assert '"persistAuthorization": true' not in page
