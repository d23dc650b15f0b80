"""AdaptationService: support set -> embeddings -> inner loop -> stored, versioned head.

A tenant is single-label (each example has one `label`) or multi-label (each example has `labels`, possibly
empty: a negative example). Its task is set by a `replace` and kept by `append`; changing it is a replace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from app.ml.head import SINGLE_LABEL, TenantHead
from app.ml.tenant_fit import SupportSet, fit_tenant
from app.services.context import TierContext
from app.services.errors import ServiceError, invalid
from app.services.records import DEFAULT_ENCODER, TenantRecord, new_generation, stored_generation, stored_task
from app.services.support import merge_support, stored_support_set, support_rows
from app.services.validation import check_label_counts, validate_support, visible_character
from app.store.base import JSON, NO_MODEL, StoredModel, TenantStore

Mode = Literal["replace", "append"]
APPEND_RETRIES = 5


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
    task: str = SINGLE_LABEL
    n_negatives: int = 0  # multi-label examples to which no label applies
    thresholds: dict[str, float] | None = None  # multi-label: each label's decision threshold
    encoder: str = DEFAULT_ENCODER  # the encoder tier the head was adapted with


class AdaptationService:
    """Turns a tenant's support set into a stored head."""

    def __init__(self, context: TierContext, store: TenantStore) -> None:
        self.context = context
        self.store = store
        visible_character()  # the blank check's pattern: built here, at startup, rather than by a request

    def fit(
        self, support: SupportSet, inner_steps: int | None, scope: str = "", generation: str = ""
    ) -> tuple[TenantHead, dict[str, float], int]:
        """Embed the support set (texts cached under `scope` and `generation` reused) and run the inner loop; no
        store access.

        `inner_steps` None: the task's default. Returns the head, timings and how many texts went through the encoder.
        """
        context = self.context
        inner = context.inner_for(support.task)
        fitted = fit_tenant(
            support,
            context.embedder,
            inner if inner_steps is None else inner.with_steps(inner_steps),
            context.oos_rule,
            cache=context.embeddings,
            scope=scope,
            generation=generation,
            math_threads=context.math_threads,
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
        task: str | None = None,
    ) -> AdaptResult:
        """Validate, fit and store a new version; nothing is written when validation fails.

        `replace` makes the request's examples the whole support set (task: `task`, default single-label);
        `append` adds them (and new labels) to the stored one and drops `remove_labels`, with compare-and-set
        against concurrent writers; it keeps the tenant's task (an explicit other `task` is a 409
        `task_mismatch`: changing a task is a replace).
        """
        started = time.perf_counter()
        descriptions = label_descriptions or {}
        if mode == "replace":
            if remove_labels:
                raise invalid("invalid_option", "remove_labels needs mode 'append'")
            task = task or SINGLE_LABEL
            steps = self.context.inner_for(task).steps if inner_steps is None else inner_steps
            support = validate_support(examples, labels, self.context.limits, descriptions, task)
            generation = _generation_of(self.store.load(tenant_id))
            head, timings, n_embedded = self.fit(support, steps, tenant_id, generation)
            version = self._save(tenant_id, head, support, steps, generation, expected_version=None)
        else:
            check_label_counts(self.context.limits, remove_labels=remove_labels)
            for _ in range(APPEND_RETRIES):
                current_model = self.store.load(tenant_id)
                current = None if current_model is None else current_model.version
                stored = self.store.load_support(tenant_id) if current is not None else []
                if current_model is not None:
                    self.context.require_own_encoder(tenant_id, current_model.meta)
                tenant_task = (task or SINGLE_LABEL) if current_model is None else stored_task(current_model.meta)
                if task is not None and task != tenant_task:
                    raise ServiceError(
                        409,
                        "task_mismatch",
                        f"tenant {tenant_id!r} is {tenant_task}; changing its task needs mode 'replace'",
                    )
                merged, merged_descriptions = merge_support(stored or [], examples, descriptions, remove_labels or [])
                support = validate_support(merged, labels, self.context.limits, merged_descriptions, tenant_task)
                steps = self.context.inner_for(tenant_task).steps if inner_steps is None else inner_steps
                generation = _generation_of(current_model)
                head, timings, n_embedded = self.fit(support, steps, tenant_id, generation)
                expected = NO_MODEL if current is None else current  # creating is a compare-and-set too
                version = self._save(tenant_id, head, support, steps, generation, expected_version=expected)
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
            encoder_fingerprint=self.context.embedder.fingerprint,
            timings_ms=timings,
            task=support.task,
            n_negatives=support.n_negatives,
            thresholds=_threshold_map(head),
            encoder=self.context.encoder_name,
        )

    def rebuild(self, tenant_id: str, version: int, inner_steps: int | None) -> tuple[int, TenantHead] | None:
        """Re-adapt from the stored support set (stale or corrupt head); None if it changed meanwhile."""
        stored_support = self.store.load_support(tenant_id)
        stored = self.store.load(tenant_id, version=version)
        if stored_support is None or stored is None:
            return None
        self.context.require_own_encoder(tenant_id, stored.meta)
        support = stored_support_set(stored_support, self.context.limits, stored_task(stored.meta))
        steps = self.context.inner_for(support.task).steps if inner_steps is None else inner_steps
        generation = stored_generation(stored.meta)
        head, _, _ = self.fit(support, steps, tenant_id, generation)
        new_version = self._save(tenant_id, head, support, steps, generation, expected_version=version)
        return None if new_version is None else (new_version, head)

    def _save(
        self,
        tenant_id: str,
        head: TenantHead,
        support: SupportSet,
        steps: int,
        generation: str,
        expected_version: int | None,
    ) -> int | None:
        context = self.context
        record = TenantRecord.fitted(
            head, support, context.embedder.fingerprint, steps, generation, context.encoder_name
        )
        return self.store.save(tenant_id, record.head_bytes, record.meta(), support_rows(support), expected_version)


def _generation_of(current: StoredModel | None) -> str:
    """The generation a new version continues: the current record's, or a fresh one when the tenant is created
    (or its record predates generations)."""
    return (stored_generation(current.meta) if current is not None else "") or new_generation()


def _threshold_map(head: TenantHead) -> dict[str, float] | None:
    if head.thresholds is None:
        return None
    return {label: round(t, 6) for label, t in zip(head.labels, head.thresholds.tolist(), strict=True)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
