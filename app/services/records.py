"""The JSON metadata stored beside each head, and the checks a stored model must pass before use."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from app.ml.head import HeadDecodeError, TenantHead
from app.ml.registry import MINILM
from app.store.base import StoredModel

RECORD_SCHEMA = 1
DEFAULT_ENCODER = MINILM.name  # records written before encoder tiers name none: they were adapted with MiniLM


class UnusableModel(Exception):
    """A stored model that must not serve: corrupt, another schema, or another encoder."""

    def __init__(self, reason: str, detail: str, encoder: str = DEFAULT_ENCODER) -> None:
        super().__init__(detail)
        self.encoder = encoder  # the record's encoder (for `not_served`)
        self.reason = reason  # "corrupt" | "schema" | "stale" | "not_served" (another encoder's tenant)


def build_meta(
    head_bytes: bytes,
    labels: list[str],
    counts: dict[str, int],
    fingerprint: str,
    inner_steps: int,
    encoder: str = DEFAULT_ENCODER,
) -> dict[str, Any]:
    """Metadata for a freshly adapted head."""
    return {
        "schema": RECORD_SCHEMA,
        "encoder": encoder,
        "labels": labels,
        "counts": [counts[label] for label in labels],  # aligned with `labels` (label names stored once)
        "n_examples": sum(counts.values()),
        "encoder_fingerprint": fingerprint,
        "inner_steps": inner_steps,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "head_sha256": hashlib.sha256(head_bytes).hexdigest(),
        "head_bytes": len(head_bytes),
    }


def new_generation() -> str:
    """A fresh id for one life of a tenant: set when the tenant is created, kept by every later version until it
    is deleted. Support embeddings are cached per (tenant, generation), so whoever creates the same tenant id
    after a delete shares nothing with the deleted one, on any replica."""
    return secrets.token_hex(8)


def stored_generation(meta: dict[str, Any]) -> str:
    """The generation a record belongs to ("" for records written before generations existed)."""
    value = meta.get("generation", "")
    return value if isinstance(value, str) else ""


def stored_encoder(meta: dict[str, Any]) -> str:
    """The name of the encoder a record was adapted with."""
    name = meta.get("encoder", DEFAULT_ENCODER)
    return name if isinstance(name, str) else DEFAULT_ENCODER


def open_record(stored: StoredModel, fingerprint: str, encoder: str = DEFAULT_ENCODER) -> TenantHead:
    """Decode a stored head after checking encoder name, schema, checksum and encoder fingerprint.

    `not_served`: the record belongs to another encoder than `encoder` (never repaired with this one)."""
    meta = stored.meta
    if stored_encoder(meta) != encoder:
        name = stored_encoder(meta)
        raise UnusableModel("not_served", f"adapted with encoder {name!r}, this one is {encoder!r}", name)
    if meta.get("schema") != RECORD_SCHEMA:
        raise UnusableModel("schema", f"record schema {meta.get('schema')!r}, expected {RECORD_SCHEMA}")
    if hashlib.sha256(stored.head).hexdigest() != meta.get("head_sha256"):
        raise UnusableModel("corrupt", "head bytes do not match their checksum")
    try:
        head = TenantHead.from_bytes(stored.head)
    except HeadDecodeError as exc:
        raise UnusableModel("corrupt", str(exc)) from exc
    if head.labels != meta.get("labels"):
        raise UnusableModel("corrupt", "head labels differ from the record's labels")
    if meta.get("encoder_fingerprint") != fingerprint:
        raise UnusableModel(
            "stale",
            f"adapted under encoder {meta.get('encoder_fingerprint')}, this server runs {fingerprint}",
        )
    return head
