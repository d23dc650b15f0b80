"""The JSON metadata stored beside each head, and the checks a stored model must pass before use."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from app.ml.head import HeadDecodeError, TenantHead
from app.store.base import StoredModel

RECORD_SCHEMA = 1


class UnusableModel(Exception):
    """A stored model that must not serve: corrupt, another schema, or another encoder."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "corrupt" | "schema" | "stale"


def build_meta(
    head_bytes: bytes,
    labels: list[str],
    counts: dict[str, int],
    fingerprint: str,
    inner_steps: int,
) -> dict[str, Any]:
    """Metadata for a freshly adapted head."""
    return {
        "schema": RECORD_SCHEMA,
        "labels": labels,
        "counts": [counts[label] for label in labels],  # aligned with `labels` (label names stored once)
        "n_examples": sum(counts.values()),
        "encoder_fingerprint": fingerprint,
        "inner_steps": inner_steps,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "head_sha256": hashlib.sha256(head_bytes).hexdigest(),
        "head_bytes": len(head_bytes),
    }


def open_record(stored: StoredModel, fingerprint: str) -> TenantHead:
    """Decode a stored head after checking schema, checksum and encoder fingerprint."""
    meta = stored.meta
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
