"""AdaptationService: support set -> embeddings -> inner loop -> stored, versioned head."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from app.ml.encoder import SentenceEncoder
from app.ml.head import TenantHead
from app.ml.learner import InnerLoopParams, adapt_head
from app.services.errors import ServiceError, invalid
from app.services.records import build_meta
from app.store.base import TenantStore


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
class SupportSet:
    """Validated support examples with label indices."""

    texts: list[str]
    labels: list[str]  # distinct labels, in output order
    targets: list[int]

    def counts(self) -> dict[str, int]:
        tally = Counter(self.targets)
        return {label: tally[i] for i, label in enumerate(self.labels)}

    def as_json(self) -> list[dict[str, str]]:
        return [{"text": t, "label": self.labels[y]} for t, y in zip(self.texts, self.targets, strict=True)]


@dataclass
class AdaptResult:
    tenant_id: str
    version: int
    labels: list[str]
    counts: dict[str, int]
    inner_steps: int
    encoder_fingerprint: str
    timings_ms: dict[str, float] = field(default_factory=dict)


def check_text(text: str, limits: Limits, where: str) -> None:
    """Reject empty/whitespace and over-long texts."""
    if not text.strip():
        raise invalid("empty_text", f"{where} is empty or whitespace")
    if len(text) > limits.max_text_chars:
        raise invalid("text_too_long", f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")


def validate_support(examples: list[dict[str, Any]], declared_labels: list[str] | None, limits: Limits) -> SupportSet:
    """Check a support set against the limits; raise `ServiceError` with a precise code."""
    if len(examples) > limits.max_examples:
        raise invalid("too_many_examples", f"{len(examples)} examples; the limit is {limits.max_examples}")
    for i, example in enumerate(examples):
        check_text(example["text"], limits, f"examples[{i}].text")
        label = example["label"]
        if not label.strip():
            raise invalid("empty_label", f"examples[{i}].label is empty or whitespace")
        if len(label) > limits.max_label_chars:
            raise invalid("label_too_long", f"examples[{i}].label is longer than {limits.max_label_chars}")
    seen = list(dict.fromkeys(example["label"] for example in examples))
    if declared_labels is not None:
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
    )


class AdaptationService:
    """Turns a tenant's support set into a stored head."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        inner: InnerLoopParams,
        store: TenantStore,
        limits: Limits,
        embed_batch_size: int = 64,
    ) -> None:
        self.encoder = encoder
        self.inner = inner
        self.store = store
        self.limits = limits
        self.embed_batch_size = embed_batch_size

    def fit(self, support: SupportSet, inner_steps: int) -> tuple[TenantHead, dict[str, float]]:
        """Embed the support set and run the inner loop; no store access."""
        started = time.perf_counter()
        embeddings = self.encoder.embed(support.texts, batch_size=self.embed_batch_size)
        embedded = time.perf_counter()
        targets = torch.tensor(support.targets, dtype=torch.long)
        params = self.inner.with_steps(inner_steps)
        tensors = adapt_head(embeddings, targets, len(support.labels), params, differentiable=False)
        head = TenantHead.from_tensors(support.labels, tensors, float(params.scale))
        adapted = time.perf_counter()
        return head, {"embed": _ms(embedded - started), "inner_loop": _ms(adapted - embedded)}

    def adapt(
        self,
        tenant_id: str,
        examples: list[dict[str, Any]],
        labels: list[str] | None = None,
        inner_steps: int | None = None,
    ) -> AdaptResult:
        """Validate, fit and store a new version; nothing is written when validation fails."""
        started = time.perf_counter()
        support = validate_support(examples, labels, self.limits)
        steps = self.inner.steps if inner_steps is None else inner_steps
        head, timings = self.fit(support, steps)
        version = self._save(tenant_id, head, support, steps, expected_version=None)
        assert version is not None
        timings["store"] = _ms(time.perf_counter() - started) - sum(timings.values())
        timings["total"] = _ms(time.perf_counter() - started)
        return AdaptResult(
            tenant_id=tenant_id,
            version=version,
            labels=support.labels,
            counts=support.counts(),
            inner_steps=steps,
            encoder_fingerprint=self.encoder.fingerprint,
            timings_ms=timings,
        )

    def rebuild(self, tenant_id: str, version: int, inner_steps: int | None) -> tuple[int, TenantHead] | None:
        """Re-adapt from the stored support set (stale or corrupt head); None if it changed meanwhile."""
        stored_support = self.store.load_support(tenant_id)
        if stored_support is None:
            return None
        try:
            support = validate_support(stored_support, None, self.limits)
        except ServiceError as exc:
            raise ServiceError(409, "model_unusable", f"stored support set is invalid: {exc.message}") from exc
        steps = self.inner.steps if inner_steps is None else inner_steps
        head, _ = self.fit(support, steps)
        new_version = self._save(tenant_id, head, support, steps, expected_version=version)
        return None if new_version is None else (new_version, head)

    def _save(
        self, tenant_id: str, head: TenantHead, support: SupportSet, steps: int, expected_version: int | None
    ) -> int | None:
        head_bytes = head.to_bytes()
        meta = build_meta(head_bytes, support.labels, support.counts(), self.encoder.fingerprint, steps)
        return self.store.save(tenant_id, head_bytes, meta, support.as_json(), expected_version)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
