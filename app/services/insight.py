"""InsightService: a tenant's evaluation report (cached per version) and which texts to label next.

The report cross-validates the stored support set of a version through the `/adapt` maths
(`app.ml.tenant_report.cross_validate` -> `tenant_fit.fit_embedded`) on the tenant's cached embeddings (the
tier's per-tenant `EmbeddingLRU`, shared with adaptation; texts it no longer holds are embedded once), or scores
the current head on a labeled test set. Reports are kept in a bounded LRU keyed by (tenant, version, encoder): a
version never changes, so a report is returned again until the tenant gets a new version.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from app.ml.head import MULTI_LABEL, SINGLE_LABEL, TenantHead
from app.ml.label_names import names_as_decided
from app.ml.multilabel_report import MultiLabelReport, cross_validated_report, labeled_set_report
from app.ml.suggest import Suggestion, suggest
from app.ml.tenant_fit import SupportSet
from app.ml.tenant_report import (
    SingleLabelReport,
    build_report,
    cross_validate,
    evaluate_head,
    label_counts,
    with_corrections,
)
from app.services.context import TierContext
from app.services.errors import invalid, missing_version, unknown_tenant
from app.services.prediction import PredictionService
from app.services.records import (
    corrections_per_label,
    stored_generation,
    stored_label_names,
    stored_steps,
    stored_task,
    stored_unlabeled,
)
from app.services.single_flight import SingleFlight
from app.services.support import stored_support_set
from app.services.unlabeled import pool_for_fit, pool_texts
from app.services.validation import check_label, check_text, example_labels
from app.store.base import JSON, TenantStore

Report = SingleLabelReport | MultiLabelReport


@dataclass
class Evaluation:
    tenant_id: str
    version: int
    cached: bool
    report: Report
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class SuggestResult:
    tenant_id: str
    version: int
    pool_size: int
    suggestions: list[tuple[str, Suggestion]]
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = "request"  # where the candidates came from: "request" (its texts) or "unlabeled" (the pool)


class ReportCache:
    """Bounded, thread-safe LRU of reports: at most `max_tenants` tenants, `versions` versions each (as many as the
    store retains, so cycling through retained versions stays cached)."""

    def __init__(self, max_tenants: int, versions: int = 5) -> None:
        self._max_tenants = max_tenants
        self._versions = versions
        self._entries: OrderedDict[str, OrderedDict[tuple[int, str], Report]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant_id: str, version: int, fingerprint: str) -> Report | None:
        with self._lock:
            versions = self._entries.get(tenant_id)
            if versions is None or (version, fingerprint) not in versions:
                return None
            self._entries.move_to_end(tenant_id)
            return versions[(version, fingerprint)]

    def put(self, tenant_id: str, version: int, fingerprint: str, report: Report) -> None:
        if self._max_tenants == 0:
            return
        with self._lock:
            versions = self._entries.setdefault(tenant_id, OrderedDict())
            versions[(version, fingerprint)] = report
            while len(versions) > self._versions:
                versions.popitem(last=False)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max_tenants:
                self._entries.popitem(last=False)

    def forget(self, tenant_id: str) -> None:
        with self._lock:
            self._entries.pop(tenant_id, None)

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._entries.values())


class InsightService:
    """Evaluation reports and labeling suggestions for a tenant."""

    def __init__(
        self,
        context: TierContext,
        store: TenantStore,
        prediction: PredictionService,
        reports: ReportCache,
        max_pool: int = 5000,
    ) -> None:
        self.context = context
        self.store = store
        self.prediction = prediction  # the heads reports and suggestions score with
        self.reports = reports
        self._flights: SingleFlight[tuple[str, int, str], tuple[Report, float]] = SingleFlight()
        self.max_pool = max_pool

    # -- evaluation -------------------------------------------------------------------------------------------

    def evaluate(self, tenant_id: str, version: int | None = None, examples: list[JSON] | None = None) -> Evaluation:
        """Cross-validation of a version's support set, or (with `examples`) the current head on a test set."""
        started = time.perf_counter()
        if examples is not None:
            return self._evaluate_on(tenant_id, version, examples, started)
        current = self.store.current_version(tenant_id)
        if current is None:
            self.reports.forget(tenant_id)
            raise unknown_tenant(tenant_id)
        pinned = current if version is None else version
        fingerprint = self.context.embedder.fingerprint
        if pinned == current:
            found = self.reports.get(tenant_id, pinned, fingerprint)
            if found is not None:
                return Evaluation(tenant_id, pinned, True, found, {"total": _ms(time.perf_counter() - started)})
        support, steps, generation, pool_used = self._stored_support(tenant_id, pinned)
        if pinned != current:
            found = self.reports.get(tenant_id, pinned, fingerprint)
            if found is not None:
                return Evaluation(tenant_id, pinned, True, found, {"total": _ms(time.perf_counter() - started)})
        loaded = time.perf_counter()

        def cross_validation() -> tuple[Report, float]:
            if support.task == MULTI_LABEL:
                computed = self._multilabel_cross_validation(tenant_id, generation, support, steps)
            else:
                computed = self._cross_validation(tenant_id, generation, support, steps, pool_used)
                computed = (self._with_corrections(tenant_id, pinned, computed[0]), computed[1])
            self.reports.put(tenant_id, pinned, fingerprint, computed[0])
            return computed

        (report, embedded), shared = self._flights.run((tenant_id, pinned, fingerprint), cross_validation)
        done = time.perf_counter()
        timings = _timings(started, loaded, max(embedded, loaded), done, "cross_validation")
        return Evaluation(tenant_id, pinned, shared, report, timings)

    def _multilabel_cross_validation(
        self, tenant_id: str, generation: str, support: SupportSet, steps: int
    ) -> tuple[Report, float]:
        texts, targets = support.fit_tensors()
        embeddings, _ = self.context.embeddings.embed(texts, self.context.embedder.embed, tenant_id, generation)
        embedded = time.perf_counter()
        n = len(support.texts)  # descriptions and names train in every fold: they are not examples to hold out
        with self.context.math():
            inner = self.context.inner_for(MULTI_LABEL).with_steps(steps)
            return cross_validated_report(embeddings, targets, support.labels, inner, n_examples=n), embedded

    def _cross_validation(
        self, tenant_id: str, generation: str, support: SupportSet, steps: int, pool_used: bool
    ) -> tuple[Report, float]:
        """The single-label report's cross-validation, each fold fitted as the version was: with the tenant's
        unlabeled pool as it is now when the version was fitted with a pool."""
        embeddings, extra_embeddings, extra_targets = self._support_embeddings(tenant_id, generation, support)
        pool = None
        if pool_used:  # the pool as a rebuild would fit with it (`/adapt`'s floor applies)
            pool = pool_for_fit(self.context, self.store, support, "auto", steps, tenant_id, generation, True).rows
        embedded = time.perf_counter()
        n = len(support.texts)
        with self.context.math():
            scored = cross_validate(
                embeddings,
                support.targets,
                support.labels,
                support.texts,
                self.context.inner.with_steps(steps),
                self.context.oos_rule,
                extra=(extra_embeddings, extra_targets),
                unlabeled=pool,
            )
            report = build_report(
                scored,
                support.labels,
                label_counts(support.targets, len(support.labels)),
                embeddings[:n],
                support.targets,
                support.texts,
                "cross_validation",
            )
        return report, embedded

    def _evaluate_on(self, tenant_id: str, version: int | None, examples: list[JSON], started: float) -> Evaluation:
        if not examples:
            raise invalid("no_examples", "examples must hold at least one labeled example")
        limits = self.context.limits
        if len(examples) > limits.max_examples:
            raise invalid("too_many_examples", f"{len(examples)} examples; the limit is {limits.max_examples}")
        if version is None:
            version, head = self.prediction.head_for(tenant_id)
        else:
            head = self.prediction.pinned_head(tenant_id, version)
        if head.multi_label:
            return self._evaluate_multilabel_on(tenant_id, version, head, examples, started)
        index = {label: i for i, label in enumerate(head.labels)}
        for i, example in enumerate(examples):
            check_text(example["text"], limits, f"examples[{i}].text")
            example_labels(example, SINGLE_LABEL, f"examples[{i}]")
            check_label(example["label"], limits, f"examples[{i}].label")
            if example["label"] not in index:
                raise invalid("unknown_label", f"examples[{i}].label {example['label']!r} is not a label of the tenant")
        support, _, generation, _ = self._stored_support(tenant_id, version)
        loaded = time.perf_counter()
        texts = [example["text"] for example in examples]
        test_embeddings = self.context.embedder.embed(texts)
        support_embeddings, _, _ = self._support_embeddings(tenant_id, generation, support)
        embedded = time.perf_counter()
        targets = [index[example["label"]] for example in examples]
        with self.context.math():
            scored = evaluate_head(head, test_embeddings, targets, texts)
            report = build_report(
                scored,
                head.labels,
                label_counts(support.targets, len(support.labels)),
                support_embeddings,
                support.targets,
                support.texts,
                "test_set",
            )
        report = self._with_corrections(tenant_id, version, report)
        done = time.perf_counter()
        timings = _timings(started, loaded, embedded, done, "scoring")
        return Evaluation(tenant_id, version, False, report, timings)

    def _with_corrections(self, tenant_id: str, version: int, report: Report) -> Report:
        """A single-label report with each label's count of examples from corrections (the version's stored rows
        record each example's source)."""
        rows = self.store.load_support(tenant_id, version=version) or []
        corrections = corrections_per_label(rows)
        if not corrections or not isinstance(report, SingleLabelReport):
            return report
        return with_corrections(report, corrections)

    def _evaluate_multilabel_on(
        self, tenant_id: str, version: int, head: TenantHead, examples: list[JSON], started: float
    ) -> Evaluation:
        index = {label: i for i, label in enumerate(head.labels)}
        truth = torch.zeros(len(examples), len(head.labels))
        for i, example in enumerate(examples):
            check_text(example["text"], self.context.limits, f"examples[{i}].text")
            for label in example_labels(example, MULTI_LABEL, f"examples[{i}]"):
                if label not in index:
                    raise invalid("unknown_label", f"examples[{i}].labels: {label!r} is not a label of the tenant")
                truth[i, index[label]] = 1.0
        support, _, _, _ = self._stored_support(tenant_id, version)
        loaded = time.perf_counter()
        test_embeddings = self.context.embedder.embed([example["text"] for example in examples])
        embedded = time.perf_counter()
        _, support_targets = support.fit_tensors()
        with self.context.math():
            report = labeled_set_report(head, test_embeddings, truth, support_targets[: len(support.texts)])
        done = time.perf_counter()
        timings = _timings(started, loaded, embedded, done, "scoring")
        return Evaluation(tenant_id, version, False, report, timings)

    def _stored_support(self, tenant_id: str, version: int) -> tuple[SupportSet, int, str, bool]:
        """A version's support set, its inner steps, its generation (the embedding cache's key for this life of
        the tenant) and whether it was fitted with the tenant's unlabeled texts."""
        stored = self.store.load(tenant_id, version=version)
        rows = self.store.load_support(tenant_id, version=version) if stored is not None else None
        if stored is None or rows is None:
            raise missing_version(self.store, tenant_id, version)
        self.context.require_own_encoder(tenant_id, stored.meta)
        task = stored_task(stored.meta)
        support = names_as_decided(
            stored_support_set(rows, self.context.limits, task), *stored_label_names(stored.meta)
        )
        steps = stored_steps(stored.meta)
        steps = self.context.inner_for(task).steps if steps is None else steps
        return support, steps, stored_generation(stored.meta), stored_unlabeled(stored.meta)[1]

    def _support_embeddings(
        self, tenant_id: str, generation: str, support: SupportSet
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Examples' embeddings, and the descriptions' (always trained on), from the tenant's embedding cache."""
        texts, targets = support.fit_inputs()
        embeddings, _ = self.context.embeddings.embed(texts, self.context.embedder.embed, tenant_id, generation)
        n = len(support.texts)
        return embeddings[:n], embeddings[n:], targets[n:]

    # -- suggestions ------------------------------------------------------------------------------------------

    def suggest(self, tenant_id: str, texts: list[str] | None, k: int) -> SuggestResult:
        """The `k` texts of the pool to label next (uncertain under the current head and diverse): of `texts`, or
        without them of the tenant's unlabeled pool (its newest `max_pool` texts that the support set lacks)."""
        started = time.perf_counter()
        if texts is not None and not texts:
            raise invalid("no_texts", "texts must hold at least one text (or leave it out to use the unlabeled pool)")
        if texts is not None and len(texts) > self.max_pool:
            raise invalid("too_many_texts", f"{len(texts)} texts; the limit for /suggest is {self.max_pool}")
        if k < 1:
            raise invalid("invalid_k", "k must be at least 1")
        for i, text in enumerate(texts or []):
            check_text(text, self.context.limits, f"texts[{i}]")
        version, head = self.prediction.head_for(tenant_id)
        support, _, generation, _ = self._stored_support(tenant_id, version)
        if texts is None:  # the tenant's pool, through the tier's pool cache
            pool = pool_texts(self.store, tenant_id, support, self.context.limits.max_unlabeled)[: self.max_pool]
            if not pool:
                raise invalid("no_texts", "no texts given and the tenant's unlabeled pool holds none left to label")
            source, embed = "unlabeled", lambda chosen: self.context.embed_pool(chosen, tenant_id, generation)[0]
        else:
            pool = list(dict.fromkeys(texts))  # a text pasted twice is one candidate
            source, embed = "request", self.context.embedder.embed
        loaded = time.perf_counter()
        pool_embeddings = embed(pool)
        support_embeddings, _, _ = self._support_embeddings(tenant_id, generation, support)
        embedded = time.perf_counter()
        with self.context.math():
            picks = suggest(head, pool_embeddings, support_embeddings, k)
        done = time.perf_counter()
        timings = _timings(started, loaded, embedded, done, "select")
        return SuggestResult(tenant_id, version, len(pool), [(pool[p.index], p) for p in picks], timings, source)


def _timings(started: float, loaded: float, embedded: float, done: float, stage: str) -> dict[str, float]:
    """Milliseconds of the load, embed and `stage` steps, and the total."""
    return {
        "load": _ms(loaded - started),
        "embed": _ms(embedded - loaded),
        stage: _ms(done - embedded),
        "total": _ms(done - started),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
