"""The OpenAPI schema: the paths and operations of the recorded snapshot, the bearer scheme always declared, and
every non-public operation's access, limit and store errors documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.web.app import create_app
from app.web.gate import is_public

SNAPSHOT = Path(__file__).with_name("openapi_operations.json")


def schema(auth_enabled: bool) -> dict[str, Any]:
    return create_app(Settings(checkpoint="none", auth_enabled=auth_enabled, _env_file=None)).openapi()


@pytest.mark.parametrize("auth_enabled", [False, True])
def test_paths_and_operations_match_the_snapshot(auth_enabled: bool) -> None:
    operations = {path: sorted(item) for path, item in schema(auth_enabled)["paths"].items()}
    assert operations == json.loads(SNAPSHOT.read_text())


@pytest.mark.parametrize("auth_enabled", [False, True])
def test_bearer_scheme_is_always_declared(auth_enabled: bool) -> None:
    scheme = schema(auth_enabled)["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_with_auth_every_operation_names_its_security_and_errors() -> None:
    for path, item in schema(auth_enabled=True)["paths"].items():
        for method, operation in item.items():
            if is_public(path):
                assert operation["security"] == [], (method, path)
                continue
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            for status in ("401", "403", "413", "429", "503"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_without_auth_no_operation_requires_a_key() -> None:
    for path, item in schema(auth_enabled=False)["paths"].items():
        for method, operation in item.items():
            assert "security" not in operation, (method, path)
            if not is_public(path):
                assert "401" not in operation["responses"] and "503" in operation["responses"], (method, path)
