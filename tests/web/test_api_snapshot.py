"""Compatibility snapshot: the HTTP API and the bytes a tenant leaves in Redis, against fixtures taken from the
code, so that neither changes by accident.

- `api_schema.json`: every operation of the OpenAPI document (auth on) with its parameters, request body and
  response schemas, and every component schema: field names, types, required lists, enums, formats and
  constraints. Prose (descriptions, titles, summaries, examples) is left out, so rewording the docs does not
  break it. `test_openapi.py` checks the auth-off variant and the security declarations.
- `stored_tenant.json`: what `POST /adapt` stores for a single-label and a multi-label tenant, adapted with the
  tiny seeded encoder and a constant inner loop: the Redis hash's fields, the zlib'd head's magic, its safetensors
  header (metadata, tensor names, dtypes, shapes), its tensors' values, the metadata's keys with the
  type of each value (the values too, except those that depend on time, randomness or the head bytes) and the
  support rows as stored. Numbers computed by the encoder and the inner loop are compared to a tolerance
  (`REL_TOLERANCE`, one int8 step): CPUs with other vector units round float sums differently in the last
  digits, so exact head bytes (their sha256, their compressed size) would pin the machine, not the format.

Regenerate both (`.venv/bin/python -m tests.web.test_api_snapshot`, with the test Redis of tests/redis_server.py)
only when the API or the stored format is meant to change, and say so in the change: stored tenants outlive
releases.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from safetensors.torch import load as st_load

from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.store import RedisStore
from app.store.redis import HEAD_ZLIB_MAGIC
from app.web.app import create_app
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer
from tests.web.conftest import SUPPORT, TICKETS

API_SNAPSHOT = Path(__file__).with_name("api_schema.json")
STORED_SNAPSHOT = Path(__file__).with_name("stored_tenant.json")

PROSE = {"description", "title", "summary", "example", "examples"}
"""OpenAPI keys left out of the snapshot: wording, not contract."""

VARYING_META = {"created_at", "generation", "head_sha256", "head_bytes"}
"""Metadata whose value depends on the clock, on randomness or on the exact head bytes (its hash, its compressed
size): compared by type only (the head is compared through its own entry)."""


REL_TOLERANCE = {"F32": 1e-4, "F16": 2e-3}
"""How far a computed float may drift between machines, by dtype: float32 kernels differ in the 7th digit, and a
float16 value may round to its neighbour (one step is 2**-10 of it); a format change moves values by far
more."""


NAME_MAPS = {"paths", "properties", "schemas", "responses", "content", "securitySchemes"}
"""OpenAPI objects whose keys are names (a property may be called `description`): nothing dropped there."""


def _without_prose(node: Any, names: bool = False) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_prose(value, key in NAME_MAPS and not names)
            for key, value in sorted(node.items())
            if names or key not in PROSE
        }
    if isinstance(node, list):
        return [_without_prose(item) for item in node]
    return node


def api_now() -> dict[str, Any]:
    """The contract part of the OpenAPI document (no model is loaded: `openapi()` needs no lifespan)."""
    document = create_app(Settings(checkpoint="none", auth_enabled=True, _env_file=None)).openapi()
    return {
        "openapi": document["openapi"],
        "info": {"version": document["info"]["version"]},
        "paths": _without_prose(document["paths"]),
        "components": _without_prose(document["components"]),
    }


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _assert_close(now: Any, want: Any, where: str, rel_tol: float = REL_TOLERANCE["F32"], int_steps: int = 0) -> None:
    """`now == want`, except that floats may differ by `rel_tol` and integral values (quantised ones) by
    `int_steps`."""
    if isinstance(want, dict):
        assert isinstance(now, dict) and sorted(now) == sorted(want), where
        for key in want:
            _assert_close(now[key], want[key], f"{where}.{key}", rel_tol, int_steps)
    elif isinstance(want, list):
        assert isinstance(now, list) and len(now) == len(want), where
        for index, (item, wanted) in enumerate(zip(now, want, strict=True)):
            _assert_close(item, wanted, f"{where}[{index}]", rel_tol, int_steps)
    elif any(isinstance(value, float) and not value.is_integer() for value in (now, want)):
        assert isinstance(now, float) and math.isclose(now, want, rel_tol=rel_tol, abs_tol=1e-6), (where, now, want)
    elif isinstance(want, (int, float)) and not isinstance(want, bool):
        assert type(now) is type(want) and abs(now - want) <= int_steps, (where, now, want)
    else:
        assert now == want, (where, now, want)


def _parsed(metadata: dict[str, str]) -> dict[str, Any]:
    """The safetensors header's metadata with each JSON value parsed (a bare string stays as it is)."""
    parsed: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _head(raw: bytes) -> dict[str, Any]:
    """A stored head: magic, then the safetensors buffer's header and tensors (values as lists)."""
    assert raw.startswith(HEAD_ZLIB_MAGIC)
    inflated = zlib.decompress(raw[len(HEAD_ZLIB_MAGIC) :])
    (header_len,) = struct.unpack("<Q", inflated[:8])
    header = json.loads(inflated[8 : 8 + header_len])
    tensors = st_load(inflated)
    return {
        "magic": raw[: len(HEAD_ZLIB_MAGIC)].decode("ascii"),
        "metadata": header.pop("__metadata__"),
        "tensors": {name: {"dtype": entry["dtype"], "shape": entry["shape"]} for name, entry in sorted(header.items())},
        "values": {name: tensor.float().tolist() for name, tensor in sorted(tensors.items())},
    }


def _meta(raw: bytes, head: bytes) -> dict[str, Any]:
    meta = json.loads(raw)
    assert meta["head_sha256"] == hashlib.sha256(head).hexdigest()
    assert len(meta["generation"]) == 16 and meta["created_at"].endswith("+00:00")
    return {
        "types": {key: _type_name(value) for key, value in meta.items()},
        "values": {key: value for key, value in meta.items() if key not in VARYING_META},
    }


def _stored(store: RedisStore, tenant_id: str) -> dict[str, Any]:
    fields = {name.decode(): value for name, value in store._client.hgetall(store._key(tenant_id, "model")).items()}
    head = zlib.decompress(fields["1:head"][len(HEAD_ZLIB_MAGIC) :])
    return {
        "fields": sorted(fields),
        "version": fields["version"].decode(),
        "versions": fields["versions"].decode(),
        "head": _head(fields["1:head"]),
        "meta": _meta(fields["1:meta"], head),
        "support": json.loads(zlib.decompress(fields["1:support"])),
    }


def stored_now(redis_url: str, store: RedisStore) -> dict[str, Any]:
    """Adapt two tenants through the HTTP layer (tiny encoder, seed 0; two inner steps) into `store`'s prefix and
    read back their hashes. Both tenants name their label-names mode (on, off): the `auto` decision compares two
    cross-validated scores of a random encoder, too close to pin across machines."""
    settings = Settings(
        store="redis", redis_url=redis_url, redis_prefix=store._prefix, checkpoint="none", _env_file=None
    )
    model = (build_tiny_encoder(packaged_tokenizer()), InnerLoopParams.constant(2, 0.04, 10.0), None)
    with TestClient(create_app(settings, model=model)) as client:
        single = client.post("/adapt", json={"tenant_id": "snap-single", "examples": SUPPORT, "label_names": "on"})
        multi = client.post(
            "/adapt",
            json={"tenant_id": "snap-multi", "task": "multi_label", "examples": TICKETS, "label_names": "off"},
        )
        assert single.status_code == multi.status_code == 200, (single.text, multi.text)
    return {"single_label": _stored(store, "snap-single"), "multi_label": _stored(store, "snap-multi")}


def test_the_api_matches_the_snapshot() -> None:
    expected = json.loads(API_SNAPSHOT.read_text())
    now = api_now()
    assert sorted(now["paths"]) == sorted(expected["paths"])
    for path, operations in now["paths"].items():
        assert operations == expected["paths"][path], path
    assert sorted(now["components"]["schemas"]) == sorted(expected["components"]["schemas"])
    for name, schema in now["components"]["schemas"].items():
        assert schema == expected["components"]["schemas"][name], name
    assert now == expected


def test_what_an_adapt_stores_matches_the_snapshot(redis_url: str, redis_store: RedisStore) -> None:
    expected = json.loads(STORED_SNAPSHOT.read_text())
    now = stored_now(redis_url, redis_store)
    assert sorted(now) == sorted(expected)
    for task, stored in now.items():
        want = expected[task]
        assert stored["fields"] == want["fields"], task
        assert (stored["version"], stored["versions"]) == (want["version"], want["versions"]), task
        assert stored["support"] == want["support"], task
        assert stored["meta"]["types"] == want["meta"]["types"], task
        _assert_close(stored["meta"]["values"], want["meta"]["values"], f"{task}.meta")
        head, want_head = stored["head"], want["head"]
        assert (head["magic"], head["tensors"]) == (want_head["magic"], want_head["tensors"]), task
        _assert_close(_parsed(head["metadata"]), _parsed(want_head["metadata"]), f"{task}.head.metadata")
        for name, values in want_head["values"].items():
            dtype = head["tensors"][name]["dtype"]
            rel_tol, steps = REL_TOLERANCE.get(dtype, 0.0), 1 if dtype == "I8" else 0
            _assert_close(head["values"][name], values, f"{task}.head.{name}", rel_tol, steps)


if __name__ == "__main__":
    from tests.redis_server import delete_prefix, test_redis_url

    API_SNAPSHOT.write_text(json.dumps(api_now(), indent=1, sort_keys=True) + "\n")
    with test_redis_url() as url:
        redis_store = RedisStore(url, prefix=f"fewshot-snapshot-{uuid.uuid4().hex[:8]}")
        try:
            snapshot = stored_now(url, redis_store)
        finally:
            delete_prefix(redis_store._client, redis_store._prefix)
            redis_store.close()
    STORED_SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
