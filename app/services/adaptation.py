"""AdaptationService: support set -> embeddings -> inner loop -> stored, versioned head.

A tenant is single-label (each example has one `label`) or multi-label (each example has `labels`, possibly
empty: a negative example). Its task is set by a `replace` and kept by `append`; changing it is a replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from app.ml.head import SINGLE_LABEL, TenantHead
from app.ml.label_names import LabelNamesMode, NamesChoice, apply_label_names, names_as_decided
from app.ml.tenant_fit import SupportSet, fit_tenant
from app.ml.threads import intra_op_threads
from app.ml.unlabeled import PoolChoice, UnlabeledMode
from app.services.context import TierContext
from app.services.errors import ServiceError, invalid
from app.services.records import (
    DEFAULT_ENCODER,
    TenantRecord,
    continued_generation,
    stored_encoder_choice,
    stored_generation,
    stored_label_names,
    stored_task,
    stored_unlabeled,
    with_sources,
)
from app.services.support import merge_support, stored_support_set, support_rows
from app.services.unlabeled import pool_for_fit
from app.services.validation import check_label_counts, validate_support, visible_character
from app.store.base import JSON, NO_MODEL, StoredModel, TenantStore

Mode = Literal["replace", "append"]
APPEND_RETRIES = 5


@dataclass
class FittedVersion:
    """A head fitted for a new version, with the evidence decisions its record keeps."""

    head: TenantHead
    names: NamesChoice
    pool: PoolChoice
    timings_ms: dict[str, float] = field(default_factory=dict)
    n_embedded: int = 0  # texts that went through the encoder


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
    label_names: NamesChoice | None = None  # whether the label names joined the support set, and why
    encoder_choice: JSON | None = None  # why `encoder: "auto"` chose the tier (None: named or default)
    unlabeled: PoolChoice | None = None  # whether the tenant's unlabeled texts shaped the head, and why


class AdaptationService:
    """Turns a tenant's support set into a stored head."""

    def __init__(self, context: TierContext, store: TenantStore) -> None:
        self.context = context
        self.store = store
        visible_character()  # the blank check's pattern: built here, at startup, rather than by a request

    def fit(
        self,
        support: SupportSet,
        inner_steps: int | None,
        scope: str = "",
        generation: str = "",
        unlabeled: torch.Tensor | None = None,
    ) -> tuple[TenantHead, dict[str, float], int]:
        """Embed the support set (texts cached under `scope` and `generation` reused) and run the inner loop (with
        the embedded `unlabeled` texts when given); no store access.

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
            unlabeled=unlabeled,
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
        revise: Callable[[list[JSON]], list[JSON]] | None = None,
        expected_version: int | None = None,
        label_names: LabelNamesMode | None = None,
        encoder_choice: JSON | None = None,
        generation: str | None = None,
        unlabeled: UnlabeledMode | None = None,
    ) -> AdaptResult:
        """Validate, fit and store a new version; nothing is written when validation fails.

        `replace` makes the request's examples the whole support set (task: `task`, default single-label);
        `append` adds them (and new labels) to the stored one and drops `remove_labels`, with compare-and-set
        against concurrent writers; it keeps the tenant's task (an explicit other `task` is a 409
        `task_mismatch`: changing a task is a replace). An append may `revise` the stored rows before the merge
        (corrections drop the examples they relabel) and name the `expected_version` it appends to (another one
        is a 409 `concurrent_update`); examples carrying `source: feedback` are stored with it.
        `label_names` ("auto" | "on" | "off"; None: "auto" for `replace`, the tenant's own for `append`): whether a
        label without a description gets its name as one (`app.ml.label_names`); the record keeps the mode.
        `encoder_choice` (a `replace` or a new tenant adapted with `encoder: "auto"`): why this tier was chosen,
        kept by the record and by every later append; `generation` is the one a new tenant gets (the chooser's
        embeddings are cached under it). A `replace` naming `expected_version` is a compare-and-set too.
        `unlabeled` ("auto" | "off"; None: "auto" for `replace`, the tenant's own for `append`): whether the
        tenant's unlabeled texts may join the fit (`app.ml.unlabeled`); the record keeps the mode. An append
        without `unlabeled` to a version fitted with the pool fits with it again without deciding anew (a
        correction stays cheap); a replace, or naming the mode, decides again.
        """
        started = time.perf_counter()
        descriptions = label_descriptions or {}
        if mode == "replace":
            if remove_labels:
                raise invalid("invalid_option", "remove_labels needs mode 'append'")
            task = task or SINGLE_LABEL
            steps = self.context.inner_for(task).steps if inner_steps is None else inner_steps
            support = validate_support(examples, labels, self.context.limits, descriptions, task)
            current_model = self.store.load(tenant_id)
            _check_expected(tenant_id, current_model, expected_version)
            generation = continued_generation(current_model, generation)
            fitted = self._fit_with_evidence(
                support, label_names or "auto", unlabeled or "auto", steps, tenant_id, generation
            )
            kept_choice = encoder_choice
            version = self._save(tenant_id, fitted, support, steps, generation, expected_version, kept_choice)
            if version is None:
                raise ServiceError(
                    409, "concurrent_update", f"tenant {tenant_id!r} changed; it is not at version {expected_version}"
                )
        else:
            check_label_counts(self.context.limits, remove_labels=remove_labels)
            for _ in range(APPEND_RETRIES):
                current_model = self.store.load(tenant_id)
                current = None if current_model is None else current_model.version
                _check_expected(tenant_id, current_model, expected_version)
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
                stored = revise(stored or []) if revise is not None else stored
                merged, merged_descriptions = merge_support(stored or [], examples, descriptions, remove_labels or [])
                support = validate_support(merged, labels, self.context.limits, merged_descriptions, tenant_task)
                steps = self.context.inner_for(tenant_task).steps if inner_steps is None else inner_steps
                generation = continued_generation(current_model, generation)
                stored_meta = None if current_model is None else current_model.meta
                mode = label_names or stored_label_names(stored_meta)[0]
                pool_mode, pool_used = stored_unlabeled(stored_meta)
                keep_pool = unlabeled is None and pool_used  # a named mode decides again
                fitted = self._fit_with_evidence(
                    support, mode, unlabeled or pool_mode, steps, tenant_id, generation, keep_pool
                )
                expected = NO_MODEL if current is None else current  # creating is a compare-and-set too
                origins = [*(stored or []), *examples]
                kept_choice = stored_encoder_choice(stored_meta) or encoder_choice
                version = self._save(tenant_id, fitted, support, steps, generation, expected, kept_choice, origins)
                if version is not None:
                    break
            else:
                raise ServiceError(409, "concurrent_update", "the tenant changed during append; retry")
        assert version is not None
        timings, head = fitted.timings_ms, fitted.head
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
            n_embedded=fitted.n_embedded,
            encoder_fingerprint=self.context.embedder.fingerprint,
            timings_ms=timings,
            task=support.task,
            n_negatives=support.n_negatives,
            thresholds=_threshold_map(head),
            encoder=self.context.encoder_name,
            label_names=fitted.names,
            encoder_choice=kept_choice,
            unlabeled=fitted.pool,
        )

    def _fit_with_evidence(
        self,
        support: SupportSet,
        mode: LabelNamesMode,
        pool_mode: UnlabeledMode,
        steps: int,
        tenant_id: str,
        generation: str,
        keep_pool: bool = False,
    ) -> FittedVersion:
        """`fit` on the support set with its label names where `mode` uses them and its unlabeled texts where
        `pool_mode` and cross-validation do: the head, both decisions, the timings (the encoder's time of both
        counted in `embed`, the decisions in `label_names` and `unlabeled`) and the texts that went through the
        encoder. `keep_pool`: fit with the pool as the version appended to was, without deciding again."""
        named, choice, names_ms, n_named = self._with_names(support, mode, tenant_id, generation)
        pooled = pool_for_fit(self.context, self.store, named, pool_mode, steps, tenant_id, generation, keep_pool)
        head, timings, n_embedded = self.fit(named, steps, tenant_id, generation, pooled.rows)
        timings["embed"] = round(timings["embed"] + names_ms["embed"] + pooled.timings_ms["embed"], 3)
        timings["label_names"] = names_ms["label_names"]
        timings["unlabeled"] = pooled.timings_ms["unlabeled"]
        return FittedVersion(head, choice, pooled.choice, timings, n_embedded + n_named + pooled.n_embedded)

    def _with_names(
        self, support: SupportSet, mode: LabelNamesMode, scope: str, generation: str
    ) -> tuple[SupportSet, NamesChoice, dict[str, float], int]:
        """The support set to fit (names added where used), the choice, its timings (`embed`: the encoder's part)
        and the texts it sent through the encoder; they are cached under `scope` and `generation`, so the fit that
        follows re-embeds none of them."""
        started = time.perf_counter()
        context = self.context
        embedded, embed_seconds = 0, 0.0

        def embed(texts: list[str]) -> torch.Tensor:
            nonlocal embedded, embed_seconds
            begun = time.perf_counter()
            rows, n = context.embeddings.embed(texts, context.embedder.embed, scope, generation)
            embedded, embed_seconds = embedded + n, embed_seconds + time.perf_counter() - begun
            return rows

        with intra_op_threads(context.math_threads):
            fitted, choice = apply_label_names(support, mode, embed, context.inner_for(support.task))
        decided = time.perf_counter() - started - embed_seconds
        return fitted, choice, {"embed": _ms(embed_seconds), "label_names": _ms(decided)}, embedded

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
        mode, used = stored_label_names(stored.meta)
        fitted = names_as_decided(support, mode, used)
        pool_mode, pool_used = stored_unlabeled(stored.meta)
        pool_rows, pool = None, PoolChoice(pool_mode, False, "as decided when the version was adapted")
        if pool_used:
            pooled = pool_for_fit(self.context, self.store, fitted, pool_mode, steps, tenant_id, generation, True)
            pool_rows, pool = pooled.rows, pooled.choice
        head, _, _ = self.fit(fitted, steps, tenant_id, generation, pool_rows)
        rebuilt = FittedVersion(head, NamesChoice(mode, used, "as decided when the version was adapted"), pool)
        choice = stored_encoder_choice(stored.meta)
        new_version = self._save(tenant_id, rebuilt, support, steps, generation, version, choice, stored_support)
        return None if new_version is None else (new_version, head)

    def _save(
        self,
        tenant_id: str,
        fitted: FittedVersion,
        support: SupportSet,
        steps: int,
        generation: str,
        expected_version: int | None,
        encoder_choice: JSON | None,
        origins: list[JSON] | None = None,
    ) -> int | None:
        """Store a new version (compare-and-set on `expected_version`); examples `origins` holds as corrections
        keep their `source`."""
        context = self.context
        record = TenantRecord.fitted(
            fitted.head,
            support,
            context.embedder.fingerprint,
            steps,
            generation,
            context.encoder_name,
            (fitted.names.mode, fitted.names.used),
            encoder_choice,
            (fitted.pool.mode, fitted.pool.used),
        )
        rows = with_sources(support_rows(support), origins or [])
        return self.store.save(tenant_id, record.head_bytes, record.meta(), rows, expected_version)


def _check_expected(tenant_id: str, current: StoredModel | None, expected_version: int | None) -> None:
    """409 `concurrent_update` when a write names a version the tenant is not at."""
    version = None if current is None else current.version
    if expected_version is not None and version != expected_version:
        raise ServiceError(
            409, "concurrent_update", f"tenant {tenant_id!r} is at version {version}, not {expected_version}"
        )


def _threshold_map(head: TenantHead) -> dict[str, float] | None:
    if head.thresholds is None:
        return None
    return {label: round(t, 6) for label, t in zip(head.labels, head.thresholds.tolist(), strict=True)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
