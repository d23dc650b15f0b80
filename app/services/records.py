"""The stored record: the JSON metadata written beside each head (`TenantRecord`), the one set of checks its
fields are read back with, and the checks a stored model must pass before use (`open_record`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.ml.head import MULTI_LABEL, SINGLE_LABEL, HeadDecodeError, TenantHead
from app.ml.label_names import LABEL_NAME_MODES, LabelNamesMode
from app.ml.registry import MINILM
from app.ml.tenant_fit import SupportSet
from app.ml.unlabeled import UNLABELED_MODES, UnlabeledMode
from app.store.base import JSON, StoredModel

RECORD_SCHEMA = 1
DEFAULT_ENCODER = MINILM.name  # records written before encoder tiers name none: they were adapted with MiniLM
LABEL_NAMES = "label_names"  # the record's field: {"mode": "auto" | "on" | "off", "used": bool}
UNLABELED = "unlabeled"  # the record's field: {"mode": "auto" | "off", "used": bool}
ENCODER_CHOICE = "encoder_choice"  # the record's field: why `encoder: "auto"` chose its tier
ADAPT, FEEDBACK = "adapt", "feedback"  # where a stored example came from: /adapt, or a correction (/feedback)


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
    """The fields every record has, for a freshly adapted head (`TenantRecord.meta` adds the rest)."""
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


@dataclass(frozen=True)
class TenantRecord:
    """The metadata stored beside a freshly fitted head: what it was adapted from, how, and by which encoder."""

    head_bytes: bytes
    support: SupportSet
    thresholds: list[float] | None  # multi-label: each label's decision threshold, aligned with the labels
    oos_threshold: float | None
    fingerprint: str
    inner_steps: int
    generation: str
    encoder: str = DEFAULT_ENCODER
    label_names: tuple[str, bool] | None = None  # (mode, used): whether the head was fitted with the label names
    encoder_choice: JSON | None = None  # why `encoder: "auto"` chose the tier (`tier_choice.choice_json`)
    unlabeled: tuple[str, bool] | None = None  # (mode, used): whether the head was fitted with unlabeled texts

    @classmethod
    def fitted(
        cls,
        head: TenantHead,
        support: SupportSet,
        fingerprint: str,
        inner_steps: int,
        generation: str,
        encoder: str = DEFAULT_ENCODER,
        label_names: tuple[str, bool] | None = None,
        encoder_choice: JSON | None = None,
        unlabeled: tuple[str, bool] | None = None,
    ) -> TenantRecord:
        thresholds = None if head.thresholds is None else head.thresholds.tolist()
        return cls(
            head.to_bytes(),
            support,
            thresholds,
            head.oos_threshold,
            fingerprint,
            inner_steps,
            generation,
            encoder,
            label_names,
            encoder_choice,
            unlabeled,
        )

    def meta(self) -> dict[str, Any]:
        """The stored JSON object (its keys in this order: stored bytes never change for the same record)."""
        support = self.support
        meta = build_meta(
            self.head_bytes, support.labels, support.counts(), self.fingerprint, self.inner_steps, self.encoder
        )
        meta["n_descriptions"] = len(support.descriptions)
        meta["oos_threshold"] = self.oos_threshold
        meta["task"] = support.task
        meta["generation"] = self.generation
        if support.task == MULTI_LABEL:
            meta["n_negatives"] = support.n_negatives
            meta["thresholds"] = [round(t, 6) for t in self.thresholds or []]
        if self.label_names is not None:
            meta[LABEL_NAMES] = {"mode": self.label_names[0], "used": self.label_names[1]}
        if self.encoder_choice is not None:
            meta[ENCODER_CHOICE] = self.encoder_choice
        if self.unlabeled is not None:
            meta[UNLABELED] = {"mode": self.unlabeled[0], "used": self.unlabeled[1]}
        return meta


def stored_encoder_choice(meta: JSON | None) -> JSON | None:
    """A record's `encoder: "auto"` decision (None: its tier was named, or the field does not pass its check)."""
    return None if meta is None else _field(meta, ENCODER_CHOICE, None)


def continued_generation(current: StoredModel | None, fresh: str | None = None) -> str:
    """The generation a new version continues: the current record's, or (`fresh`, else a new one) when the tenant
    is created or its record predates generations."""
    return (stored_generation(current.meta) if current is not None else "") or fresh or new_generation()


def stored_label_names(meta: JSON | None) -> tuple[LabelNamesMode, bool]:
    """A record's label-names mode and whether its head used them; ("auto", False) for a new tenant or a record
    without the field (adapted before names were used)."""
    stored = meta.get(LABEL_NAMES) if meta is not None else None
    if isinstance(stored, dict) and stored.get("mode") in LABEL_NAME_MODES and isinstance(stored.get("used"), bool):
        return stored["mode"], stored["used"]
    return "auto", False


def stored_unlabeled(meta: JSON | None) -> tuple[UnlabeledMode, bool]:
    """A record's unlabeled-texts mode and whether its head used the pool; ("auto", False) for a new tenant or a
    record without the field."""
    stored = meta.get(UNLABELED) if meta is not None else None
    if isinstance(stored, dict) and stored.get("mode") in UNLABELED_MODES and isinstance(stored.get("used"), bool):
        return stored["mode"], stored["used"]
    return "auto", False


def new_generation() -> str:
    """A fresh id for one life of a tenant: set when the tenant is created, kept by every later version until it
    is deleted. Support embeddings are cached per (tenant, generation), so whoever creates the same tenant id
    after a delete shares nothing with the deleted one, on any replica."""
    return secrets.token_hex(8)


def example_source(row: JSON) -> str:
    """Where a stored support row came from: its `source` field; rows written without one (every /adapt row, and
    every row stored before corrections existed) came from /adapt."""
    return FEEDBACK if row.get("source") == FEEDBACK else ADAPT


def with_sources(rows: list[JSON], origins: Iterable[JSON]) -> list[JSON]:
    """`rows` (support rows about to be stored), each single-label example whose first occurrence in `origins`
    (stored rows, then the request's examples) is a correction marked `source: feedback`; the others stay as
    they are, so a support set without corrections is stored byte for byte as before."""
    first: dict[tuple[str, str], str] = {}
    for origin in origins:
        if not origin.get("description") and isinstance(origin.get("label"), str):
            first.setdefault((origin["text"], origin["label"]), example_source(origin))
    corrected = {key for key, source in first.items() if source == FEEDBACK}
    if not corrected:
        return rows
    return [
        {**row, "source": FEEDBACK}
        if not row.get("description") and (row["text"], row.get("label")) in corrected
        else row
        for row in rows
    ]


def corrections_per_label(rows: list[JSON]) -> dict[str, int]:
    """How many of the stored examples each label got from corrections (labels without any are left out)."""
    counts: dict[str, int] = {}
    for row in rows:
        if example_source(row) == FEEDBACK and not row.get("description") and isinstance(row.get("label"), str):
            counts[row["label"]] = counts.get(row["label"], 0) + 1
    return counts


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_steps(value: Any) -> bool:
    return _is_int(value) and value >= 0


FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {  # the one check of each stored field a reader may trust
    "labels": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "counts": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) for k, n in v.items()),
    "n_examples": _is_int,
    "n_descriptions": _is_int,
    "inner_steps": lambda v: v is None or _is_steps(v),
    "oos_threshold": lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool)),
    "encoder_fingerprint": lambda v: v is None or isinstance(v, str),
    "created_at": lambda v: v is None or isinstance(v, str),
    "task": lambda v: v in (SINGLE_LABEL, MULTI_LABEL),
    "encoder": lambda v: isinstance(v, str),
    "n_negatives": _is_int,
    "thresholds": lambda v: isinstance(v, dict) and all(isinstance(t, float | int) for t in v.values()),
    "generation": lambda v: isinstance(v, str),
    ENCODER_CHOICE: lambda v: _is_choice(v),
}


def _is_choice(value: Any) -> bool:
    """An `encoder: "auto"` decision as `tier_choice.choice_json` writes it."""
    if not isinstance(value, dict):
        return False
    texts = all(isinstance(value.get(k), str) for k in ("requested", "chosen", "preferred", "language", "reason"))
    share = value.get("english_share")
    accuracies = value.get("accuracies")
    return (
        texts
        and isinstance(share, int | float)
        and not isinstance(share, bool)
        and isinstance(accuracies, dict)
        and all(
            isinstance(k, str) and isinstance(a, int | float) and not isinstance(a, bool) for k, a in accuracies.items()
        )
    )


def checked_fields(meta: JSON, names: Iterable[str]) -> dict[str, Any]:
    """Those of the fields `names` of a stored record that pass their check (counts and thresholds keyed by
    label); tampered or missing ones are left out, so a reader sees its defaults."""
    meta = {
        **meta,
        "counts": _by_label(meta.get("labels"), meta.get("counts")),
        "thresholds": _by_label(meta.get("labels"), meta.get("thresholds")),
    }
    return {name: meta[name] for name in names if name in meta and FIELD_CHECKS[name](meta[name])}


def _by_label(labels: Any, values: Any) -> dict[str, Any] | None:
    """Stored counts (or thresholds) are a list aligned with `labels`; read as a dict (None when they do not line
    up)."""
    if isinstance(labels, list) and isinstance(values, list) and len(labels) == len(values):
        return dict(zip(labels, values, strict=True)) if all(isinstance(x, str) for x in labels) else None
    return None


def _field(meta: JSON, name: str, default: Any) -> Any:
    value = meta.get(name, default)
    return value if FIELD_CHECKS[name](value) else default


def stored_generation(meta: JSON) -> str:
    """The generation a record belongs to ("" for records written before generations existed)."""
    return _field(meta, "generation", "")


def stored_encoder(meta: JSON) -> str:
    """The name of the encoder a record was adapted with."""
    return _field(meta, "encoder", DEFAULT_ENCODER)


def stored_task(meta: JSON) -> str:
    """The task a stored version was adapted for (records from before multi-label are single-label)."""
    return _field(meta, "task", SINGLE_LABEL)


def stored_steps(meta: JSON) -> int | None:
    """The inner steps a stored version was adapted with (None when missing or not a non-negative int)."""
    return _field(meta, "inner_steps", None)


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
