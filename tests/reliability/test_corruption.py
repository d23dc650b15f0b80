"""Corrupted stored models (tampered bytes, truncated or non-JSON metadata, other schema) are never used.

Each case tampers with the Redis hash directly, the way a bad disk, a buggy writer or an older/newer release
would; the service must notice (checksum, schema version, label cross-check) and either re-adapt from the
stored support set (a new version) or answer 409 `model_unusable`, and never serve the damaged head.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.store import RedisStore
from app.store.redis import decode_head, encode_head
from tests.redis_server import StoredVersion
from tests.web.conftest import CARDS, FX, REFUND, support


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """A tenant id of its own for each test (the app and its Redis prefix are shared by the module)."""
    return "t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


SUPPORT = support(("card", CARDS), ("fx", FX), ("refund", REFUND))
Tamper = Callable[[RedisStore, str], None]


def _meta(store: RedisStore, tenant: str) -> dict:
    return json.loads(StoredVersion(store, tenant).get("meta"))


def _set_meta(store: RedisStore, tenant: str, meta: dict) -> None:
    StoredVersion(store, tenant).set("meta", json.dumps(meta))


def _head(store: RedisStore, tenant: str) -> bytes:
    """The head's safetensors bytes (stored zlib'd)."""
    return decode_head(StoredVersion(store, tenant).get("head"))


def _set_head(store: RedisStore, tenant: str, head: bytes, meta: dict | None = None) -> None:
    fields = {"head": encode_head(head)} | ({"meta": json.dumps(meta)} if meta is not None else {})
    StoredVersion(store, tenant).set_many(fields)


def flip_tensor_byte(store: RedisStore, tenant: str) -> None:
    """Same length, one bit of the weights flipped (silent disk/memory corruption)."""
    head = bytearray(_head(store, tenant))
    head[len(head) // 2] ^= 0x10
    _set_head(store, tenant, bytes(head))


def flip_header_byte(store: RedisStore, tenant: str) -> None:
    """Same length, one byte of the safetensors JSON header changed."""
    head = bytearray(_head(store, tenant))
    head[12] ^= 0x01
    _set_head(store, tenant, bytes(head))


def truncate_stored_zlib_stream(store: RedisStore, tenant: str) -> None:
    """The stored (compressed) value cut short: it no longer inflates."""
    raw = StoredVersion(store, tenant).get("head")
    StoredVersion(store, tenant).set("head", raw[:-10])


def bump_record_schema(store: RedisStore, tenant: str) -> None:
    """Metadata written by an incompatible release (record schema 2)."""
    _set_meta(store, tenant, _meta(store, tenant) | {"schema": 2})


def drop_record_schema(store: RedisStore, tenant: str) -> None:
    meta = _meta(store, tenant)
    del meta["schema"]
    _set_meta(store, tenant, meta)


def swap_meta_labels(store: RedisStore, tenant: str) -> None:
    """Metadata labels reordered: the head's rows would be read under the wrong names."""
    meta = _meta(store, tenant)
    meta["labels"] = [meta["labels"][1], meta["labels"][0], *meta["labels"][2:]]
    _set_meta(store, tenant, meta)


def rename_meta_label(store: RedisStore, tenant: str) -> None:
    meta = _meta(store, tenant)
    meta["labels"][0] = "hijacked"
    _set_meta(store, tenant, meta)


def meta_fields_of_wrong_types(store: RedisStore, tenant: str) -> None:
    _set_meta(store, tenant, _meta(store, tenant) | {"labels": "card", "counts": [1], "n_examples": "9"})


def truncate_meta(store: RedisStore, tenant: str) -> None:
    """Metadata cut mid-JSON (not parseable)."""
    raw = StoredVersion(store, tenant).get("meta")
    StoredVersion(store, tenant).set("meta", raw[: len(raw) // 2])


def meta_not_an_object(store: RedisStore, tenant: str) -> None:
    StoredVersion(store, tenant).set("meta", b"[1, 2, 3]")


def head_schema_with_valid_checksum(store: RedisStore, tenant: str) -> None:
    """A head encoded by another head schema, its checksum updated to match (an incompatible writer)."""
    head = _head(store, tenant)
    (length,) = struct.unpack("<Q", head[:8])
    header = json.loads(head[8 : 8 + length])
    header["__metadata__"]["schema"] = "99"
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    new_head = struct.pack("<Q", len(encoded)) + encoded + head[8 + length :]
    meta = _meta(store, tenant) | {"head_sha256": hashlib.sha256(new_head).hexdigest(), "head_bytes": len(new_head)}
    _set_head(store, tenant, new_head, meta)


def truncate_head_with_valid_checksum(store: RedisStore, tenant: str) -> None:
    head = _head(store, tenant)[:-40]
    meta = _meta(store, tenant) | {"head_sha256": hashlib.sha256(head).hexdigest(), "head_bytes": len(head)}
    _set_head(store, tenant, head, meta)


REPAIRABLE: dict[str, tuple[Tamper, str]] = {
    "tensor byte flipped": (flip_tensor_byte, "corrupt"),
    "header byte flipped": (flip_header_byte, "corrupt"),
    "stored zlib stream truncated": (truncate_stored_zlib_stream, "corrupt"),
    "record schema 2": (bump_record_schema, "schema"),
    "record schema missing": (drop_record_schema, "schema"),
    "meta labels swapped": (swap_meta_labels, "corrupt"),
    "meta label renamed": (rename_meta_label, "corrupt"),
    "meta fields of wrong types": (meta_fields_of_wrong_types, "corrupt"),
    "meta truncated": (truncate_meta, "schema"),
    "meta not an object": (meta_not_an_object, "schema"),
    "head schema 99, checksum updated": (head_schema_with_valid_checksum, "corrupt"),
    "head truncated, checksum updated": (truncate_head_with_valid_checksum, "corrupt"),
}


@pytest.mark.parametrize("case", list(REPAIRABLE))
def test_tampered_model_is_detected_and_readapted(
    case: str, module_app: tuple[TestClient, RedisStore], tenant: str
) -> None:
    reliable_client, redis_store = module_app
    tamper, reason = REPAIRABLE[case]
    adapted = reliable_client.post("/adapt", json={"tenant_id": tenant, "examples": SUPPORT})
    assert adapted.status_code == 200
    version = adapted.json()["version"]
    tamper(redis_store, tenant)

    described = reliable_client.get(f"/tenants/{tenant}")
    assert described.status_code == 200 and described.json()["status"] == reason

    texts = ["my card has still not come", "refund this order please", "euro to dollar rate"]
    predicted = reliable_client.post("/predict", json={"tenant_id": tenant, "texts": texts, "top_k": 3})
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["version"] == version + 1, "the damaged version must not serve"
    assert [p["top_k"][0]["label"] for p in body["predictions"]] == ["card", "refund", "fx"]
    assert all({s["label"] for s in p["top_k"]} == {"card", "fx", "refund"} for p in body["predictions"])

    repaired = reliable_client.get(f"/tenants/{tenant}").json()
    assert repaired["status"] == "ready" and repaired["version"] == version + 1
    assert repaired["labels"] == ["card", "fx", "refund"]
    assert redis_store.load_support(tenant) == SUPPORT


@pytest.mark.parametrize(
    "support_value",
    [b"not json", b'{"text": "a"}', b'[{"text": 1, "label": "a"}]', json.dumps([{"text": "a", "label": "x"}]).encode()],
    ids=["not-json", "not-a-list", "wrong-types", "one-label"],
)
def test_unrepairable_model_is_a_clear_409_never_a_500(
    support_value: bytes, module_app: tuple[TestClient, RedisStore], tenant: str
) -> None:
    reliable_client, redis_store = module_app
    reliable_client.post("/adapt", json={"tenant_id": tenant, "examples": SUPPORT})
    flip_tensor_byte(redis_store, tenant)
    StoredVersion(redis_store, tenant).set("support", support_value)
    for _ in range(2):  # and stays a 409: the damaged head is never cached or served
        response = reliable_client.post("/predict", json={"tenant_id": tenant, "texts": ["hello"]})
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "model_unusable"
    described = reliable_client.get(f"/tenants/{tenant}")
    assert described.status_code == 200 and described.json()["status"] == "corrupt"


def test_cached_head_is_revalidated_when_the_store_changes_behind_it(
    module_app: tuple[TestClient, RedisStore], tenant: str
) -> None:
    """A head cached by this process is dropped as soon as another writer publishes a damaged version."""
    reliable_client, redis_store = module_app
    reliable_client.post("/adapt", json={"tenant_id": tenant, "examples": SUPPORT})
    assert reliable_client.post("/predict", json={"tenant_id": tenant, "texts": ["hi"]}).status_code == 200
    # another process writes version n+1 whose head is damaged
    stored = redis_store.load(tenant)
    assert stored is not None
    damaged = bytearray(stored.head)
    damaged[-1] ^= 0xFF
    new_version = redis_store.save(tenant, bytes(damaged), stored.meta, SUPPORT)
    predicted = reliable_client.post("/predict", json={"tenant_id": tenant, "texts": ["refund me"]})
    assert predicted.status_code == 200
    assert predicted.json()["version"] == new_version + 1  # re-adapted, not the cached or the damaged head
