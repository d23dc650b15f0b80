"""AdaptationService: support set -> embeddings -> inner loop -> stored, versioned head."""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from app.ml.embedder import Embedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import OosRule, SupportSet, fit_tenant
from app.services.errors import ServiceError, invalid
from app.services.records import build_meta
from app.store.base import JSON, NO_MODEL, TenantStore

Mode = Literal["replace", "append"]
APPEND_RETRIES = 5


@dataclass(frozen=True)
class Limits:
    """Request limits (from settings)."""

    max_examples: int = 5000
    max_labels: int = 500
    max_texts: int = 256
    max_text_chars: int = 2000
    max_label_chars: int = 100
    max_top_k: int = 20


@dataclass
class AdaptResult:
    tenant_id: str
    version: int
    labels: list[str]
    counts: dict[str, int]
    n_descriptions: int
    inner_steps: int
    oos_threshold: float | None
    n_embedded: int
    encoder_fingerprint: str
    timings_ms: dict[str, float] = field(default_factory=dict)


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # fillers and blanks drawn as nothing


def is_blank(text: str) -> bool:
    """True when nothing in `text` is visible: whitespace, zero-width and format characters (ZWSP, BOM,
    direction overrides), control characters and the Hangul fillers."""
    return all(
        char.isspace() or char in _INVISIBLE_LETTERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES
        for char in text
    )


def encodes_as_utf8(text: str) -> bool:
    """False for text holding lone surrogates (valid JSON `\\ud800`, but no UTF-8 text and no token)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, limits: Limits, where: str) -> None:
    """Reject text that is not UTF-8, blank (nothing visible) or over-long."""
    if not encodes_as_utf8(text):
        raise invalid("invalid_text", f"{where} is not valid Unicode text (it holds a lone surrogate)")
    if is_blank(text):
        raise invalid("empty_text", f"{where} is empty or has no visible character")
    if len(text) > limits.max_text_chars:
        raise invalid("text_too_long", f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")


def check_label(label: str, limits: Limits, where: str) -> None:
    """Reject labels that are not UTF-8, blank (nothing visible) or over-long."""
    if not encodes_as_utf8(label):
        raise invalid("invalid_label", f"{where} is not valid Unicode text (it holds a lone surrogate)")
    if is_blank(label):
        raise invalid("empty_label", f"{where} is empty or has no visible character")
    if len(label) > limits.max_label_chars:
        raise invalid("label_too_long", f"{where} is longer than {limits.max_label_chars} characters")


def validate_support(
    examples: list[JSON],
    declared_labels: list[str] | None,
    limits: Limits,
    descriptions: dict[str, str] | None = None,
) -> SupportSet:
    """Check a support set against the limits; raise `ServiceError` with a precise code."""
    descriptions = dict(descriptions or {})
    if len(examples) > limits.max_examples:
        raise invalid("too_many_examples", f"{len(examples)} examples; the limit is {limits.max_examples}")
    for i, example in enumerate(examples):
        check_text(example["text"], limits, f"examples[{i}].text")
        check_label(example["label"], limits, f"examples[{i}].label")
    for label, text in descriptions.items():
        check_label(label, limits, f"label_descriptions key {label!r}")
        check_text(text, limits, f"label_descriptions[{label!r}]")
    seen = list(dict.fromkeys([*(example["label"] for example in examples), *descriptions]))
    if declared_labels is not None:
        for i, label in enumerate(declared_labels):
            check_label(label, limits, f"labels[{i}]")
        if len(set(declared_labels)) != len(declared_labels):
            raise invalid("duplicate_label", "labels contains duplicates")
        missing = [label for label in declared_labels if label not in set(seen)]
        if missing:
            raise invalid("label_without_examples", f"labels without any example: {missing[:10]}")
        undeclared = [label for label in seen if label not in set(declared_labels)]
        if undeclared:
            raise invalid("undeclared_label", f"examples use labels not in `labels`: {undeclared[:10]}")
        seen = list(declared_labels)
    if len(seen) < 2:
        raise invalid("too_few_labels", f"{len(seen)} distinct label(s); a classifier needs at least 2")
    if len(seen) > limits.max_labels:
        raise invalid("too_many_labels", f"{len(seen)} distinct labels; the limit is {limits.max_labels}")
    index = {label: i for i, label in enumerate(seen)}
    return SupportSet(
        texts=[example["text"] for example in examples],
        labels=seen,
        targets=[index[example["label"]] for example in examples],
        descriptions=descriptions,
    )


def support_rows(support: SupportSet) -> list[JSON]:
    """A support set as stored rows (examples, then descriptions flagged `description`); read by `split_stored`."""
    rows: list[JSON] = [
        {"text": t, "label": support.labels[y]} for t, y in zip(support.texts, support.targets, strict=True)
    ]
    rows += [{"text": text, "label": label, "description": True} for label, text in support.descriptions.items()]
    return rows


def split_stored(rows: list[JSON]) -> tuple[list[JSON], dict[str, str]]:
    """Stored support rows -> (examples, label descriptions)."""
    examples = [{"text": r["text"], "label": r["label"]} for r in rows if not r.get("description")]
    descriptions = {r["label"]: r["text"] for r in rows if r.get("description")}
    return examples, descriptions


def stored_support_set(rows: list[JSON], limits: Limits) -> SupportSet:
    """A stored support set, validated again (limits may have changed); 409 `model_unusable` when it fails."""
    examples, descriptions = split_stored(rows)
    try:
        return validate_support(examples, None, limits, descriptions)
    except ServiceError as exc:
        raise ServiceError(409, "model_unusable", f"stored support set is invalid: {exc.message}") from exc


def merge_support(
    stored: list[JSON],
    examples: list[JSON],
    descriptions: dict[str, str],
    remove_labels: list[str],
) -> tuple[list[JSON], dict[str, str]]:
    """Stored support + new examples (exact duplicates dropped) + new descriptions, minus removed labels."""
    old_examples, old_descriptions = split_stored(stored)
    for label in remove_labels:
        if not encodes_as_utf8(label):
            raise invalid("invalid_label", "remove_labels holds a label that is not valid Unicode text")
    known = {example["label"] for example in old_examples} | set(old_descriptions)
    unknown = [label for label in remove_labels if label not in known]
    if unknown:
        raise invalid("unknown_label", f"cannot remove labels the tenant does not have: {unknown[:10]}")
    drop = set(remove_labels)
    merged, seen = [], set()
    for example in [*old_examples, *examples]:
        key = (example["text"], example["label"])
        if example["label"] not in drop and key not in seen:
            seen.add(key)
            merged.append(example)
    merged_descriptions = {k: v for k, v in (old_descriptions | descriptions).items() if k not in drop}
    return merged, merged_descriptions


class AdaptationService:
    """Turns a tenant's support set into a stored head."""

    def __init__(
        self,
        embedder: Embedder,
        inner: InnerLoopParams,
        store: TenantStore,
        limits: Limits,
        oos_rule: OosRule | None = None,
        embedding_cache: EmbeddingLRU | None = None,
        math_threads: int | None = None,
    ) -> None:
        self.embedder = embedder
        self.inner = inner
        self.math_threads = math_threads  # intra-op threads for the inner loop (None: the thread's own)
        self.store = store
        self.limits = limits
        self.oos_rule = oos_rule or OosRule()
        self.embeddings = embedding_cache if embedding_cache is not None else EmbeddingLRU(0)

    def fit(self, support: SupportSet, inner_steps: int, scope: str = "") -> tuple[TenantHead, dict[str, float], int]:
        """Embed the support set (texts cached under `scope` reused) and run the inner loop; no store access.

        Returns the head, timings and how many texts went through the encoder.
        """
        fitted = fit_tenant(
            support,
            self.embedder,
            self.inner.with_steps(inner_steps),
            self.oos_rule,
            cache=self.embeddings,
            scope=scope,
            math_threads=self.math_threads,
        )
        return fitted.head, fitted.timings_ms, fitted.n_embedded

    def adapt(
        self,
        tenant_id: str,
        examples: list[JSON],
        labels: list[str] | None = None,
        inner_steps: int | None = None,
        mode: Mode = "replace",
        remove_labels: list[str] | None = None,
        label_descriptions: dict[str, str] | None = None,
    ) -> AdaptResult:
        """Validate, fit and store a new version; nothing is written when validation fails.

        `replace` makes the request's examples the whole support set; `append` adds them (and new
        labels) to the stored one and drops `remove_labels`, with compare-and-set against
        concurrent writers.
        """
        started = time.perf_counter()
        steps = self.inner.steps if inner_steps is None else inner_steps
        descriptions = label_descriptions or {}
        if mode == "replace":
            if remove_labels:
                raise invalid("invalid_option", "remove_labels needs mode 'append'")
            support = validate_support(examples, labels, self.limits, descriptions)
            head, timings, n_embedded = self.fit(support, steps, tenant_id)
            version = self._save(tenant_id, head, support, steps, expected_version=None)
        else:
            for _ in range(APPEND_RETRIES):
                current = self.store.current_version(tenant_id)
                stored = self.store.load_support(tenant_id) if current is not None else []
                merged, merged_descriptions = merge_support(stored or [], examples, descriptions, remove_labels or [])
                support = validate_support(merged, labels, self.limits, merged_descriptions)
                head, timings, n_embedded = self.fit(support, steps, tenant_id)
                expected = NO_MODEL if current is None else current  # creating is a compare-and-set too
                version = self._save(tenant_id, head, support, steps, expected_version=expected)
                if version is not None:
                    break
            else:
                raise ServiceError(409, "concurrent_update", "the tenant changed during append; retry")
        assert version is not None
        timings["store"] = round(_ms(time.perf_counter() - started) - sum(timings.values()), 3)
        timings["total"] = _ms(time.perf_counter() - started)
        return AdaptResult(
            tenant_id=tenant_id,
            version=version,
            labels=support.labels,
            counts=support.counts(),
            n_descriptions=len(support.descriptions),
            inner_steps=steps,
            oos_threshold=head.oos_threshold,
            n_embedded=n_embedded,
            encoder_fingerprint=self.embedder.fingerprint,
            timings_ms=timings,
        )

    def rebuild(self, tenant_id: str, version: int, inner_steps: int | None) -> tuple[int, TenantHead] | None:
        """Re-adapt from the stored support set (stale or corrupt head); None if it changed meanwhile."""
        stored_support = self.store.load_support(tenant_id)
        if stored_support is None:
            return None
        support = stored_support_set(stored_support, self.limits)
        steps = self.inner.steps if inner_steps is None else inner_steps
        head, _, _ = self.fit(support, steps, tenant_id)
        new_version = self._save(tenant_id, head, support, steps, expected_version=version)
        return None if new_version is None else (new_version, head)

    def _save(
        self, tenant_id: str, head: TenantHead, support: SupportSet, steps: int, expected_version: int | None
    ) -> int | None:
        head_bytes = head.to_bytes()
        meta = build_meta(head_bytes, support.labels, support.counts(), self.embedder.fingerprint, steps)
        meta["n_descriptions"] = len(support.descriptions)
        meta["oos_threshold"] = head.oos_threshold
        return self.store.save(tenant_id, head_bytes, meta, support_rows(support), expected_version)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
