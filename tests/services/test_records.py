"""The stored record: the JSON written beside a head (keys, values and order fixed), the one check each field is
read back with, and the one rule for a version that was not found."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from app.ml.embedder import EncoderEmbedder
from app.ml.encoder import SentenceEncoder
from app.ml.head import MULTI_LABEL, TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import SupportSet
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError, missing_version
from app.services.records import (
    DEFAULT_ENCODER,
    RECORD_SCHEMA,
    TenantRecord,
    checked_fields,
    stored_encoder,
    stored_generation,
    stored_steps,
    stored_task,
)
from app.services.support import stored_support_set
from app.store import MemoryStore
from tests.services.test_multilabel_service import TICKETS
from tests.services.test_validation import SUPPORT


def _written_by_hand(
    head_bytes: bytes,
    support: SupportSet,
    meta: dict[str, Any],
    label_names: dict[str, Any] | None = None,
    unlabeled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record a head and its support set are stored with, field by field (the fingerprint, `created_at` and
    generation taken from `meta`; `label_names` and `unlabeled`: the adapt path's choices, last)."""
    head = TenantHead.from_bytes(head_bytes)
    counts = support.counts()
    expected: dict[str, Any] = {
        "schema": RECORD_SCHEMA,
        "encoder": DEFAULT_ENCODER,
        "labels": support.labels,
        "counts": [counts[label] for label in support.labels],
        "n_examples": sum(counts.values()),
        "encoder_fingerprint": meta["encoder_fingerprint"],
        "inner_steps": 2,
        "created_at": meta["created_at"],
        "head_sha256": hashlib.sha256(head_bytes).hexdigest(),
        "head_bytes": len(head_bytes),
        "n_descriptions": len(support.descriptions),
        "oos_threshold": head.oos_threshold,
        "task": support.task,
        "generation": meta["generation"],
    }
    if support.task == MULTI_LABEL:
        expected["n_negatives"] = support.n_negatives
        expected["thresholds"] = [round(t, 6) for t in head.thresholds.tolist()]  # type: ignore[union-attr]
    if label_names is not None:
        expected["label_names"] = label_names
    if unlabeled is not None:
        expected["unlabeled"] = unlabeled
    return expected


@pytest.mark.parametrize(("examples", "task"), [(SUPPORT, "single_label"), (TICKETS, "multi_label")])
def test_the_stored_record_has_the_same_keys_values_and_order(
    tiny_encoder: SentenceEncoder, examples: list[dict[str, Any]], task: str
) -> None:
    store = MemoryStore()
    context = TierContext(EncoderEmbedder(tiny_encoder), InnerLoopParams.constant(2, 0.04, 10.0))
    service = AdaptationService(context, store)
    descriptions = {examples[0].get("label") or "billing": "money questions"}
    service.adapt("acme", examples, label_descriptions=descriptions, task=task, label_names="off")
    stored, rows = store.load("acme"), store.load_support("acme")
    assert stored is not None and rows is not None
    support = stored_support_set(rows, context.limits, task)
    names, pool = {"mode": "off", "used": False}, {"mode": "auto", "used": False}
    assert json.dumps(stored.meta) == json.dumps(_written_by_hand(stored.head, support, stored.meta, names, pool))

    head, _, _ = service.fit(support, 2)
    record = TenantRecord.fitted(head, support, context.embedder.fingerprint, 2, "0123456789abcdef")
    meta = record.meta()
    assert json.dumps(meta) == json.dumps(_written_by_hand(record.head_bytes, support, meta))


@pytest.mark.parametrize(
    ("value", "steps"),
    [(3, 3), (0, 0), (True, None), (False, None), (-1, None), ("3", None), (2.0, None), (None, None)],
)
def test_inner_steps_are_read_back_as_a_non_negative_int_never_a_bool(value: object, steps: int | None) -> None:
    assert stored_steps({"inner_steps": value}) == steps
    assert checked_fields({"inner_steps": value}, ["inner_steps"]).get("inner_steps") == steps
    assert stored_steps({}) is None


def test_task_encoder_and_generation_read_their_defaults_when_missing_or_tampered() -> None:
    assert (stored_task({}), stored_encoder({}), stored_generation({})) == ("single_label", DEFAULT_ENCODER, "")
    tampered = {"task": ["multi_label"], "encoder": 7, "generation": None}
    assert (stored_task(tampered), stored_encoder(tampered), stored_generation(tampered)) == (
        "single_label",
        DEFAULT_ENCODER,
        "",
    )
    kept = {"task": "multi_label", "encoder": "mpnet", "generation": "abc"}
    assert (stored_task(kept), stored_encoder(kept), stored_generation(kept)) == ("multi_label", "mpnet", "abc")


def test_counts_and_thresholds_are_read_by_label_only_when_they_line_up() -> None:
    meta = {"labels": ["a", "b"], "counts": [2, 3], "thresholds": [0.5], "n_examples": True}
    fields = checked_fields(meta, ["labels", "counts", "thresholds", "n_examples"])
    assert fields == {"labels": ["a", "b"], "counts": {"a": 2, "b": 3}}


def test_a_version_not_found_is_unknown_version_only_while_the_tenant_exists(tiny_encoder: SentenceEncoder) -> None:
    store = MemoryStore()
    context = TierContext(EncoderEmbedder(tiny_encoder), InnerLoopParams.constant(2, 0.04, 10.0))
    AdaptationService(context, store).adapt("acme", SUPPORT)
    codes = [
        missing_version(store, "acme", 9).code,
        missing_version(store, "acme", None).code,
        missing_version(store, "nobody", 9).code,
        missing_version(store, "nobody", None).code,
    ]
    assert codes == ["unknown_version", "unknown_tenant", "unknown_tenant", "unknown_tenant"]
    assert all(isinstance(missing_version(store, "acme", v), ServiceError) for v in (None, 9))
