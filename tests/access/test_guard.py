"""The access guard as plain Python: keys, scopes and rate limits over a Redis client (or memory), no HTTP."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from app.access.guard import BOOTSTRAP_ADMIN_ID, build_guard
from app.access.keys import digest
from app.store import StoreUnavailable, connect
from harness.ports import free_port

ACCESS_DIR = Path(__file__).resolve().parents[2] / "app" / "access"


def test_access_imports_no_web_framework() -> None:
    """`app.access` is handed a Redis client; the HTTP side lives in `app.web.gate`."""
    for path in ACCESS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    root = name.split(".")[0]
                    assert root not in {"fastapi", "starlette", "pydantic"}, (path.name, name)
                    assert not name.startswith(("app.web", "app.config", "app.bootstrap")), (path.name, name)


@pytest.mark.parametrize("shared_redis", [False, True])
def test_keys_scopes_and_limits(redis_url: str, redis_prefix: str, shared_redis: bool) -> None:
    client = connect(redis_url) if shared_redis else None
    admin_key = "fsk_bootstrap"
    guard = build_guard(True, client, redis_prefix, (3, 60), hashlib.sha256(admin_key.encode()).hexdigest())
    try:
        admin = guard.authenticate(admin_key)
        assert admin is not None and admin.admin and admin.key_id == BOOTSTRAP_ADMIN_ID
        key, record = guard.create_key("acme", admin=False, tenants=["acme", "acme"])
        principal = guard.authenticate(key)
        assert principal is not None and principal.allows("acme") and not principal.allows("other")
        assert record.tenants == ("acme",) and guard.keys.lookup(digest(key)) == record
        assert [guard.hit("key:x").allowed for _ in range(4)] == [True, True, True, False]  # type: ignore[union-attr]
        assert guard.keys.revoke(record.key_id) and guard.authenticate(key) is None
    finally:
        if client is not None:
            for stored in client.scan_iter(match=f"{redis_prefix}:*"):
                client.delete(stored)
            client.close()


def test_redis_outage_is_store_unavailable() -> None:
    guard = build_guard(True, connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5), "p", (1, 60))
    with pytest.raises(StoreUnavailable):
        guard.authenticate("fsk_anything")
    with pytest.raises(StoreUnavailable):
        guard.hit("key:x")
