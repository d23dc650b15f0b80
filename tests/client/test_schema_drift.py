"""The client's models cannot drift from the server: every field of every client model exists in the live
server's /openapi.json with a compatible type (requests: what the client sends, the server takes; replies: what
the server sends, the client parses), and every field the server requires is in the client model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fewshot_client import models
from pydantic import BaseModel

# (method, path, client request model or None, client reply model)
OPERATIONS: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None]] = [
    ("post", "/adapt", models.AdaptRequest, models.AdaptResponse),
    ("post", "/predict", models.PredictRequest, models.PredictResponse),
    ("get", "/tenants", None, models.TenantList),
    ("get", "/tenants/{tenant_id}", None, models.TenantInfo),
    ("get", "/tenants/{tenant_id}/versions", None, models.VersionList),
    ("post", "/tenants/{tenant_id}/rollback", models.RollbackRequest, models.RollbackResponse),
    ("post", "/tenants/{tenant_id}/evaluate", models.EvaluateRequest, models.EvaluateResponse),
    ("post", "/tenants/{tenant_id}/suggest", models.SuggestRequest, models.SuggestResponse),
    ("post", "/tenants/{tenant_id}/feedback", models.FeedbackRequest, models.FeedbackResponse),
    ("post", "/tenants/{tenant_id}/unlabeled", models.UnlabeledRequest, models.UnlabeledResponse),
    ("get", "/tenants/{tenant_id}/unlabeled", None, models.PoolResponse),
    ("delete", "/tenants/{tenant_id}/unlabeled", None, models.PoolCleared),
    ("delete", "/tenants/{tenant_id}", None, None),
    ("get", "/encoders", None, models.EncoderList),
    ("get", "/healthz", None, models.Health),
]
NOT_YET_SERVED: set[tuple[str, str]] = set()  # client fields a server may lack (none today)
ALL_KINDS = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})


class Schemas:
    """A JSON schema document's `$ref`s resolved (`#/components/schemas/X` or `#/$defs/X`)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def alternatives(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return [alt for option in schema[key] for alt in self.alternatives(option)]
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.alternatives(schema["allOf"][0])
        return [schema]

    def kinds(self, schema: dict[str, Any]) -> set[str]:
        kinds: set[str] = set()
        for alt in self.alternatives(schema):
            if "const" in alt or "enum" in alt:
                values = [alt["const"]] if "const" in alt else alt["enum"]
                kinds |= {_kind_of(value) for value in values}
            elif "type" in alt:
                kinds |= set(alt["type"]) if isinstance(alt["type"], list) else {alt["type"]}
            elif "properties" in alt or "discriminator" in alt:
                kinds.add("object")
            else:
                kinds |= ALL_KINDS  # any JSON
        return kinds

    def enum(self, schema: dict[str, Any]) -> set[Any] | None:
        values: set[Any] = set()
        for alt in self.alternatives(schema):
            if "const" in alt:
                values.add(alt["const"])
            elif "enum" in alt:
                values |= set(alt["enum"])
            elif alt.get("type") != "null":
                return None
        return values

    def part(self, schema: dict[str, Any], key: str) -> dict[str, Any] | None:
        """The non-null alternative's `items` / `additionalProperties` / object schema."""
        for alt in self.alternatives(schema):
            if key == "object" and "properties" in alt:
                return alt
            if key in alt and isinstance(alt[key], dict):
                return alt[key]
        return None


def _kind_of(value: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}.get(
        type(value), "object"
    )


def _widen(kinds: set[str]) -> set[str]:
    return kinds | {"integer"} if "number" in kinds else kinds


def _compare(client: Schemas, c: dict, server: Schemas, s: dict, sending: bool, where: str, out: list[str]) -> None:
    """Type compatibility of one value: the sender's kinds must be accepted by the receiver."""
    client_kinds, server_kinds = client.kinds(c), server.kinds(s)
    if sending:
        sent, accepted = client_kinds - {"null"}, _widen(server_kinds)  # the client leaves None out
    else:
        sent, accepted = server_kinds, _widen(client_kinds)
    if not sent <= accepted:
        out.append(f"{where}: sends {sorted(sent)}, receiver takes {sorted(accepted)}")
        return
    client_enum, server_enum = client.enum(c), server.enum(s)
    if client_enum is not None and server_enum is not None:
        extra = (client_enum - server_enum) if sending else (server_enum - client_enum)
        if extra:
            out.append(f"{where}: values {sorted(map(str, extra))} not understood by the receiver")
    for key in ("items", "additionalProperties"):
        c_part, s_part = client.part(c, key), server.part(s, key)
        if c_part is not None and s_part is not None:
            _compare(client, c_part, server, s_part, sending, f"{where}[]", out)
    c_obj, s_obj = client.part(c, "object"), server.part(s, "object")
    if c_obj is not None and s_obj is not None:
        _compare_objects(client, c_obj, server, s_obj, sending, where, out)


def _compare_objects(
    client: Schemas, c: dict, server: Schemas, s: dict, sending: bool, where: str, out: list[str]
) -> None:
    c_props, s_props = c.get("properties", {}), s.get("properties", {})
    name = c.get("title", where)
    for field, c_field in c_props.items():
        if field not in s_props:
            if (name, field) not in NOT_YET_SERVED:
                out.append(f"{where}.{field}: not in the server's schema")
            continue
        _compare(client, c_field, server, s_props[field], sending, f"{where}.{field}", out)
    client_required = set(c.get("required", []))
    for field in s.get("required", []):
        if field not in c_props:
            out.append(f"{where}.{field}: required by the server, missing in the client model")
        elif sending and field not in client_required:
            out.append(f"{where}.{field}: required by the server, optional in the client model")


def _request_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    return operation["requestBody"]["content"]["application/json"]["schema"]


def _reply_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    for status in ("200", "201"):
        if status in operation.get("responses", {}):
            return operation["responses"][status]["content"]["application/json"]["schema"]
    return None


@pytest.fixture(scope="module")
def openapi(server: str) -> dict[str, Any]:
    return httpx.get(f"{server}/openapi.json", timeout=30).json()


@pytest.mark.parametrize(
    ("method", "path", "request_model", "reply_model"), OPERATIONS, ids=[f"{m} {p}" for m, p, *_ in OPERATIONS]
)
def test_client_models_match_the_live_schema(
    openapi: dict[str, Any],
    method: str,
    path: str,
    request_model: type[BaseModel] | None,
    reply_model: type[BaseModel] | None,
) -> None:
    operation = openapi["paths"].get(path, {}).get(method)
    assert operation is not None, f"{method.upper()} {path} is not served"
    server = Schemas(openapi)
    problems: list[str] = []
    if request_model is not None:
        client_schema = request_model.model_json_schema()
        client = Schemas(client_schema)
        _compare(client, client_schema, server, _request_schema(openapi, operation), True, "request", problems)
    else:
        assert "requestBody" not in operation
    if reply_model is not None:
        client_schema = reply_model.model_json_schema(mode="serialization")
        server_reply = _reply_schema(operation)
        assert server_reply is not None, f"{method.upper()} {path} has no JSON reply"
        _compare(Schemas(client_schema), client_schema, server, server_reply, False, "reply", problems)
    assert not problems, "\n".join(problems)


def test_the_checker_sees_drift() -> None:
    """A renamed field, a wrong type, a missing required field and an unknown enum value are all caught."""

    class Reply(BaseModel):
        version: str
        labelz: list[str]

    server_doc = {
        "components": {
            "schemas": {
                "R": {
                    "properties": {
                        "version": {"type": "integer"},
                        "labels": {"type": "array", "items": {"type": "string"}},
                        "task": {"enum": ["single_label", "multi_label"]},
                    },
                    "required": ["version", "labels"],
                }
            }
        }
    }
    problems: list[str] = []
    client_schema = Reply.model_json_schema()
    ref = {"$ref": "#/components/schemas/R"}
    _compare(Schemas(client_schema), client_schema, Schemas(server_doc), ref, False, "reply", problems)
    assert any("labelz" in p for p in problems) and any("reply.labels: required" in p for p in problems)
    assert any("reply.version: sends ['integer']" in p for p in problems)

    class Ask(BaseModel):
        task: str | None = None

    problems = []
    ask = {"properties": {"task": {"enum": ["single_label"]}}, "required": []}
    schema = Ask.model_json_schema()
    _compare(Schemas(schema), schema, Schemas({"components": {"schemas": {"A": ask}}}), ask, True, "request", problems)
    assert problems == []  # a free string is sent as is: only literals are compared value by value
