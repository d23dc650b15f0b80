"""PredictionService: tenant head (cached, validated) + shared encoder -> labels and probabilities."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from anyio import to_thread

from app.ml.head import SINGLE_LABEL, TenantHead
from app.ml.work import Priority, Work, working_for
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.errors import ServiceError, encoder_not_served, invalid, missing_version, unknown_tenant
from app.services.evidence import MAX_EXPLAIN, Evidence, SupportMatrices, SupportMatrix, build_matrix, nearest
from app.services.model_cache import CachedHead, HeadCache
from app.services.records import DEFAULT_ENCODER, UnusableModel, open_record, stored_steps
from app.services.single_flight import SingleFlight
from app.services.validation import check_text
from app.store.base import StoredModel, TenantStore

INLINE_HEAD_CELLS = 16_384  # texts x labels up to which the head maths run on the event loop (~0.3 ms at most)


@dataclass
class Prediction:
    label: str | None  # None when out of scope (multi-label: when no label applies)
    score: float
    top_k: list[tuple[str, float]]
    out_of_scope: bool
    oos_score: float
    labels: list[tuple[str, float]] | None = None  # multi-label: every label that applies, best first
    evidence: list[Evidence] | None = None  # with `explain`: nearest support examples of the asked labels


@dataclass
class PredictResult:
    tenant_id: str
    version: int
    oos_threshold: float | None
    predictions: list[Prediction]
    timings_ms: dict[str, float] = field(default_factory=dict)
    task: str = SINGLE_LABEL
    encoder: str = DEFAULT_ENCODER
    label_threshold: float | None = None  # multi-label: the request's one threshold for every label, if given


class PredictionService:
    """Serves predictions; repairs stale or corrupt heads from the stored support set.

    A repair re-adapts a version (its support set, and its unlabeled pool if it was fitted with one): work the
    size of an /adapt. It runs once per (tenant, version, encoder) however many predictions find the head unusable
    meanwhile (they share its result), and as the tenant's bulk work, so its encoder passes queue behind other
    tenants' predictions and take turns with their heavy requests, as an /adapt's do.
    """

    def __init__(
        self, context: TierContext, store: TenantStore, cache: HeadCache, adaptation: AdaptationService
    ) -> None:
        self.context = context
        self.store = store
        self.cache = cache
        self.adaptation = adaptation  # rebuilds stale or corrupt heads
        self.evidence = SupportMatrices()  # support matrices for `explain`, per tenant version (DELETE forgets)
        self._repairs: SingleFlight[tuple[str, int, str], tuple[int, TenantHead]] = SingleFlight()

    def head_for(self, tenant_id: str) -> tuple[int, TenantHead]:
        """The tenant's current head, from the cache when its version is still current."""
        hit = self._cache_hit(tenant_id)
        if hit is not None:
            return hit
        stored = self.store.load(tenant_id)
        if stored is None:
            raise unknown_tenant(tenant_id)
        try:
            head = self._open(tenant_id, stored)
            version = stored.version
        except UnusableModel as exc:
            version, head = self._shared_repair(tenant_id, stored.version, stored_steps(stored.meta), exc)
        self.cache.put(tenant_id, CachedHead(version, self.context.embedder.fingerprint, head))
        return version, head

    def _open(self, tenant_id: str, stored: StoredModel) -> TenantHead:
        """`open_record` with this service's encoder; another encoder's record is a 409 `encoder_not_served` (a
        ServiceError, so it is never repaired), the other problems stay `UnusableModel`."""
        try:
            return open_record(stored, self.context.embedder.fingerprint, self.context.encoder_name)
        except UnusableModel as exc:
            if exc.reason == "not_served":
                raise encoder_not_served(tenant_id, exc.encoder) from exc
            raise

    def repairs_waiting(self, tenant_id: str) -> int:
        """How many callers wait on the repair of `tenant_id`'s current version under this encoder (0: none runs)."""
        version = self.store.current_version(tenant_id)
        if version is None:
            return 0
        return self._repairs.callers((tenant_id, version, self.context.embedder.fingerprint))

    def _shared_repair(
        self, tenant_id: str, version: int, steps: int | None, problem: UnusableModel
    ) -> tuple[int, TenantHead]:
        """`_repair`, once for every concurrent caller of the same version, as `tenant_id`'s bulk work."""
        key = (tenant_id, version, self.context.embedder.fingerprint)
        with working_for(Work(tenant_id, Priority.BULK)):
            repaired, _ = self._repairs.run(key, lambda: self._repair(tenant_id, version, steps, problem))
        return repaired

    def _repair(
        self, tenant_id: str, version: int, steps: int | None, problem: UnusableModel
    ) -> tuple[int, TenantHead]:
        for _ in range(3):  # a concurrent /adapt may win the compare-and-set; then use its version
            if self.store.current_version(tenant_id) == version:  # else it changed meanwhile: no refit to throw away
                rebuilt = self.adaptation.rebuild(tenant_id, version, steps)
                if rebuilt is not None:
                    return rebuilt
            stored = self.store.load(tenant_id)
            if stored is None:
                raise unknown_tenant(tenant_id)
            try:
                return stored.version, self._open(tenant_id, stored)
            except UnusableModel as again:
                version, problem = stored.version, again
        raise ServiceError(409, "model_unusable", f"stored model is {problem.reason}: {problem}")

    def pinned_head(self, tenant_id: str, version: int) -> TenantHead:
        """A retained earlier version, decoded (not cached: pinning is for audits and A/B checks)."""
        stored = self.store.load(tenant_id, version=version)
        if stored is None:
            raise missing_version(self.store, tenant_id, version)
        try:
            return self._open(tenant_id, stored)
        except UnusableModel as exc:
            raise ServiceError(409, "model_unusable", f"version {version} is {exc.reason}: {exc}") from exc

    def predict(
        self,
        tenant_id: str,
        texts: list[str],
        top_k: int = 1,
        version: int | None = None,
        oos_threshold: float | None = None,
        label_threshold: float | None = None,
        explain: int = 0,
    ) -> PredictResult:
        """Labels and probabilities; `version` pins a retained version, `oos_threshold` overrides the tenant's
        out-of-scope threshold (single-label), `label_threshold` every label's threshold (multi-label), `explain`
        asks for that many nearest support examples per predicted (and runner-up) label."""
        started = time.perf_counter()
        self._check(texts, top_k, explain)
        version, head = self._head(tenant_id, version)
        threshold = self._threshold(head, oos_threshold, label_threshold)
        matrix = self.support_matrix(tenant_id, version, head) if explain else None
        ask = _Asked(
            tenant_id, texts, top_k, version, head, threshold, label_threshold, started, time.perf_counter(), explain
        )
        return self._answer(ask, self.context.embedder.embed(texts), matrix)

    async def predict_async(
        self,
        tenant_id: str,
        texts: list[str],
        top_k: int = 1,
        version: int | None = None,
        oos_threshold: float | None = None,
        label_threshold: float | None = None,
        explain: int = 0,
    ) -> PredictResult:
        """`predict` for an event loop, with a worker thread only where one buys something: the head comes from
        an in-process store and the head cache on the loop (a worker thread when the store does I/O or the head
        must be decoded or rebuilt), the embeddings from the micro-batcher's await (a worker thread without
        one), and the head maths on the loop unless the request is large. A support matrix for `explain` comes
        from its cache on the loop, else from a worker thread (it reads the store and may embed)."""
        started = time.perf_counter()
        self._check(texts, top_k, explain)
        hit = self._cached_on_loop(tenant_id) if version is None else None
        version, head = hit if hit is not None else await to_thread.run_sync(self._head, tenant_id, version)
        threshold = self._threshold(head, oos_threshold, label_threshold)
        matrix = None
        if explain:
            matrix = self.evidence.get(tenant_id, version, self.context.embedder.fingerprint)
            if matrix is None:
                matrix = await to_thread.run_sync(self.support_matrix, tenant_id, version, head)
        ask = _Asked(
            tenant_id, texts, top_k, version, head, threshold, label_threshold, started, time.perf_counter(), explain
        )
        if self.context.embed_async is not None:
            embeddings = await self.context.embed_async(texts)
        else:
            embeddings = await to_thread.run_sync(self.context.embedder.embed, texts)
        cells = len(texts) * (len(head.labels) + (len(matrix.texts) if matrix is not None else 0))
        if cells <= INLINE_HEAD_CELLS:
            return self._answer(ask, embeddings, matrix)
        return await to_thread.run_sync(self._answer, ask, embeddings, matrix)

    def support_matrix(self, tenant_id: str, version: int, head: TenantHead) -> SupportMatrix:
        """The support matrix of `tenant_id`'s `version`, from the cache or built (and kept)."""
        fingerprint = self.context.embedder.fingerprint
        matrix = self.evidence.get(tenant_id, version, fingerprint)
        if matrix is not None:
            return matrix
        context = self.context
        matrix = build_matrix(self.store, tenant_id, version, head, context.embedder, context.embeddings)
        if matrix is None:
            raise missing_version(self.store, tenant_id, version)
        self.evidence.put(tenant_id, version, fingerprint, matrix)
        return matrix

    def _cached_on_loop(self, tenant_id: str) -> tuple[int, TenantHead] | None:
        """The current head when answering needs no I/O: an in-process store and a cache hit; else None."""
        return self._cache_hit(tenant_id) if self.store.in_process else None

    def _cache_hit(self, tenant_id: str) -> tuple[int, TenantHead] | None:
        """(version, head) from the cache when it holds the current version under this encoder; else None.
        An unknown tenant is a 404."""
        version = self.store.current_version(tenant_id)
        if version is None:
            raise unknown_tenant(tenant_id)
        cached = self.cache.get(tenant_id, version)
        if cached is None or cached.fingerprint != self.context.embedder.fingerprint:
            return None
        return cached.version, cached.head

    def _check(self, texts: list[str], top_k: int, explain: int = 0) -> None:
        if not texts:
            raise invalid("no_texts", "texts must hold at least one text")
        limits = self.context.limits
        if len(texts) > limits.max_texts:
            raise invalid("too_many_texts", f"{len(texts)} texts; the limit is {limits.max_texts}")
        if not 1 <= top_k <= limits.max_top_k:
            raise invalid("invalid_top_k", f"top_k must be between 1 and {limits.max_top_k}")
        if not 0 <= explain <= MAX_EXPLAIN:
            raise invalid("invalid_explain", f"explain must be between 0 and {MAX_EXPLAIN}")
        for i, text in enumerate(texts):
            check_text(text, limits, f"texts[{i}]")

    @staticmethod
    def _threshold(head: TenantHead, oos_threshold: float | None, label_threshold: float | None) -> float | None:
        """The out-of-scope threshold to apply, once the options are checked against the head's task."""
        if head.multi_label and oos_threshold is not None:
            raise invalid(
                "invalid_option",
                "oos_threshold applies to single-label tenants; a multi-label tenant shows out-of-scope as no label "
                "applying (see label_threshold)",
            )
        if not head.multi_label and label_threshold is not None:
            raise invalid("invalid_option", "label_threshold applies to multi-label tenants")
        return head.oos_threshold if oos_threshold is None else oos_threshold

    def _head(self, tenant_id: str, version: int | None) -> tuple[int, TenantHead]:
        if version is None:
            return self.head_for(tenant_id)
        return version, self.pinned_head(tenant_id, version)

    def _answer(self, ask: _Asked, embeddings: torch.Tensor, matrix: SupportMatrix | None = None) -> PredictResult:
        """The head's answer for the embedded texts (options checked against the head's task first), with the
        evidence of `matrix` when `explain` asks for it."""
        head, threshold = ask.head, ask.threshold
        embedded = time.perf_counter()
        k = min(ask.top_k, len(head.labels))
        with self.context.math():
            scores_all = head.scores(embeddings)
            similarity = head.oos_scores(embeddings).tolist()
            scores, indices = torch.topk(scores_all, k, dim=-1)
            applies = _applying(head, scores_all, ask.label_threshold) if head.multi_label else None
        predictions = []
        for row, (row_scores, row_indices, sim) in enumerate(
            zip(scores.tolist(), indices.tolist(), similarity, strict=True)
        ):
            ranked = [(head.labels[i], float(s)) for i, s in zip(row_indices, row_scores, strict=True)]
            if applies is not None:
                chosen = applies[row]
                predictions.append(
                    Prediction(
                        label=chosen[0][0] if chosen else None,
                        score=ranked[0][1],
                        top_k=ranked,
                        out_of_scope=not chosen,
                        oos_score=round(float(sim), 6),
                        labels=chosen,
                    )
                )
                continue
            outside = threshold is not None and sim < threshold
            predictions.append(
                Prediction(
                    label=None if outside else ranked[0][0],
                    score=ranked[0][1],
                    top_k=ranked,
                    out_of_scope=outside,
                    oos_score=round(float(sim), 6),
                )
            )
        if ask.explain and matrix is not None:
            with self.context.math():
                asked = _explained_labels(head, scores_all, applies)
                for prediction, found in zip(
                    predictions, nearest(matrix, embeddings, asked, ask.explain, head.labels), strict=True
                ):
                    prediction.evidence = found
        done = time.perf_counter()
        timings = {
            "load": round((ask.loaded - ask.started) * 1000, 3),
            "embed": round((embedded - ask.loaded) * 1000, 3),
            "head": round((done - embedded) * 1000, 3),
            "total": round((done - ask.started) * 1000, 3),
        }
        return PredictResult(
            ask.tenant_id,
            ask.version,
            threshold,
            predictions,
            timings,
            task=head.task,
            label_threshold=ask.label_threshold if head.multi_label else None,
            encoder=self.context.encoder_name,
        )


@dataclass
class _Asked:
    """One /predict request once its head is known: what was asked, of which head, and when."""

    tenant_id: str
    texts: list[str]
    top_k: int
    version: int
    head: TenantHead
    threshold: float | None  # out-of-scope (single-label)
    label_threshold: float | None  # the request's override (multi-label)
    started: float
    loaded: float
    explain: int = 0  # nearest support examples per explained label


def _explained_labels(
    head: TenantHead, scores: torch.Tensor, applies: list[list[tuple[str, float]]] | None
) -> list[list[int]]:
    """Per text, the head label indices to show evidence for: single-label, the top-scoring label (also when out of
    scope) and the runner-up; multi-label, each label that applies (the top-scoring one when none does)."""
    if applies is None:
        return torch.topk(scores, min(2, len(head.labels)), dim=-1).indices.tolist()
    index = {label: i for i, label in enumerate(head.labels)}
    top = scores.argmax(dim=-1).tolist()
    return [[index[label] for label, _ in chosen] or [best] for chosen, best in zip(applies, top, strict=True)]


def _applying(head: TenantHead, scores: torch.Tensor, override: float | None) -> list[list[tuple[str, float]]]:
    """Per text, the labels that apply (`TenantHead.applying`: thresholds, top-label rule, or `override`), best
    first."""
    chosen = []
    for row, applied in zip(scores, head.applying(scores, override), strict=True):
        hits = applied.nonzero().squeeze(1).tolist()
        chosen.append(sorted(((head.labels[i], float(row[i])) for i in hits), key=lambda pair: -pair[1]))
    return chosen
