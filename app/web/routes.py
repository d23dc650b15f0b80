"""HTTP routes: adapt, predict, tenants, health. Thin: validate shape, call a service, shape the reply."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from app.ml.work import Priority, Work, working_for
from app.services.adaptation import AdaptResult
from app.services.feedback import Correction, FeedbackResult, FeedbackService
from app.services.insight import Evaluation, SuggestResult
from app.store.base import JSON, StoreUnavailable
from app.web import metrics, replies
from app.web.deps import Caller, Heavy, Pools, ReadinessInfo, ServedTiers, Store, Tenants
from app.web.errors import error_response
from app.web.json_route import JsonBodyRoute
from app.web.schemas import (
    ERROR_RESPONSES,
    TENANT_ID_PATTERN,
    AdaptRequest,
    AdaptResponse,
    EncoderList,
    ErrorResponse,
    EvaluateRequest,
    EvaluateResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    PoolCleared,
    PoolResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    RollbackRequest,
    RollbackResponse,
    SuggestRequest,
    SuggestResponse,
    TenantInfo,
    TenantList,
    UnlabeledRequest,
    UnlabeledResponse,
    VersionList,
)

log = logging.getLogger("fewshot.api")
router = APIRouter(route_class=JsonBodyRoute)
TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN, description="Tenant id.", examples=["acme-support"])]
MAX_LISTED = 10_000


@router.post("/adapt", response_model=AdaptResponse, responses=ERROR_RESPONSES, tags=["tenants"])
async def adapt(body: AdaptRequest, encoders: ServedTiers, heavy: Heavy, request: Request) -> AdaptResponse:
    """Adapt a tenant's classifier from its labeled examples; replaces the previous version."""

    def run() -> AdaptResult:
        examples = [example.model_dump(exclude_none=True) for example in body.examples]
        tier, choice, generation = encoders.for_adapt(body.tenant_id, body.mode, body.encoder), None, None
        if tier is None:
            tier, choice, generation = encoders.choose(
                body.tenant_id, examples, body.labels, body.label_descriptions, body.task
            )
        return tier.adaptation.adapt(
            body.tenant_id,
            examples,
            labels=body.labels,
            inner_steps=body.inner_steps,
            mode=body.mode,
            remove_labels=body.remove_labels,
            label_descriptions=body.label_descriptions,
            task=body.task,
            label_names=body.label_names,
            encoder_choice=choice,
            generation=generation,
            expected_version=body.expected_version,
            unlabeled=body.unlabeled,
        )

    result = await heavy.run(request, body.tenant_id, run)
    metrics.observe_operation("adapt", len(body.examples), result.timings_ms)
    return replies.adapted(result)


@router.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES, tags=["tenants"])
async def predict(body: PredictRequest, encoders: ServedTiers, pools: Pools) -> PredictResponse:
    """Classify texts with the tenant's current model (and, with `keep_unlabeled`, keep them in its unlabeled
    pool)."""
    with working_for(Work(body.tenant_id, Priority.INTERACTIVE)):
        tier = await encoders.of_tenant_async(body.tenant_id, body.version)
        result = await tier.prediction.predict_async(
            body.tenant_id,
            body.texts,
            top_k=body.top_k,
            version=body.version,
            oos_threshold=body.oos_threshold,
            label_threshold=body.label_threshold,
            explain=body.explain,
        )
    kept = await pools.add_async(body.tenant_id, body.texts) if body.keep_unlabeled else None
    metrics.observe_operation("predict", len(body.texts), result.timings_ms)
    return replies.predicted(result, None if kept is None else kept.size)


@router.post(
    "/tenants/{tenant_id}/feedback", response_model=FeedbackResponse, responses=ERROR_RESPONSES, tags=["tenants"]
)
async def feedback(
    tenant_id: TenantPath, body: FeedbackRequest, encoders: ServedTiers, heavy: Heavy, request: Request
) -> FeedbackResponse:
    """Correct predictions: each text with its right label becomes an example of a new version (the same
    compare-and-set as an `/adapt` append; a text held with another label is relabelled, one held with the same
    label is ignored), so the next /predict of the text answers the corrected label."""
    corrections = [Correction(c.text, c.label, c.predicted) for c in body.corrections]

    def run() -> FeedbackResult:
        service = FeedbackService(encoders.of_tenant(tenant_id).adaptation)
        return service.correct(tenant_id, corrections, body.expected_version)

    result = await heavy.run(request, tenant_id, run)
    metrics.observe_operation("feedback", len(corrections), result.adapted.timings_ms)
    return replies.corrected(result)


@router.post(
    "/tenants/{tenant_id}/unlabeled", response_model=UnlabeledResponse, responses=ERROR_RESPONSES, tags=["tenants"]
)
def add_unlabeled(tenant_id: TenantPath, body: UnlabeledRequest, pools: Pools) -> UnlabeledResponse:
    """Keep unlabeled texts (the tenant's traffic) in its bounded pool: /suggest picks from them when sent no texts,
    and /adapt fits with them where cross-validation on the support set shows a gain."""
    return replies.pool_updated(tenant_id, pools.add(tenant_id, body.texts), pools.limits.max_unlabeled)


@router.get("/tenants/{tenant_id}/unlabeled", response_model=PoolResponse, responses=ERROR_RESPONSES, tags=["tenants"])
def unlabeled_pool(tenant_id: TenantPath, pools: Pools) -> PoolResponse:
    """How many unlabeled texts the tenant's pool holds."""
    info = pools.info(tenant_id)
    return PoolResponse(tenant_id=tenant_id, size=info.size, max_texts=info.max_texts)


@router.delete(
    "/tenants/{tenant_id}/unlabeled", response_model=PoolCleared, responses=ERROR_RESPONSES, tags=["tenants"]
)
def clear_unlabeled(tenant_id: TenantPath, pools: Pools) -> PoolCleared:
    """Empty the tenant's pool of unlabeled texts (the model keeps what it was fitted with until the next /adapt)."""
    return PoolCleared(tenant_id=tenant_id, removed=pools.clear(tenant_id))


@router.get("/tenants", response_model=TenantList, responses=ERROR_RESPONSES, tags=["tenants"])
def list_tenants(
    caller: Caller,
    tenants: Tenants,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description="Tenants per page.")] = 1000,
    after: Annotated[
        str | None, Query(max_length=128, description="The previous page's `next_after`: list the tenants after it.")
    ] = None,
) -> TenantList:
    """Tenants with a model, limited to the caller's scope, sorted by id, a page at a time."""
    if caller.admin:
        ids, next_after = tenants.list_ids(limit, after)
    else:
        ids, next_after = tenants.existing(caller.tenants, limit, after)
    return TenantList(tenants=ids, next_after=next_after)


@router.get("/tenants/{tenant_id}", response_model=TenantInfo, responses=ERROR_RESPONSES, tags=["tenants"])
def get_tenant(tenant_id: TenantPath, tenants: Tenants) -> TenantInfo:
    """Describe a tenant's current model."""
    return replies.tenant_info(tenants.describe(tenant_id))


@router.get("/tenants/{tenant_id}/versions", response_model=VersionList, responses=ERROR_RESPONSES, tags=["tenants"])
def list_versions(tenant_id: TenantPath, tenants: Tenants) -> VersionList:
    """Retained versions of a tenant's model (newest first) with sizes and support statistics."""
    return replies.version_list(tenants.versions(tenant_id))


@router.post(
    "/tenants/{tenant_id}/rollback", response_model=RollbackResponse, responses=ERROR_RESPONSES, tags=["tenants"]
)
def rollback(tenant_id: TenantPath, body: RollbackRequest, tenants: Tenants) -> RollbackResponse:
    """Restore a retained earlier version; it becomes the current one under a new version number."""
    return replies.rolled_back(tenants.rollback(tenant_id, body.version))


@router.post(
    "/tenants/{tenant_id}/evaluate", response_model=EvaluateResponse, responses=ERROR_RESPONSES, tags=["insight"]
)
async def evaluate(
    tenant_id: TenantPath, encoders: ServedTiers, heavy: Heavy, request: Request, body: EvaluateRequest | None = None
) -> EvaluateResponse:
    """How good the tenant's classifier is and what to fix: cross-validation of its support set through the
    /adapt path (or, with `examples`, the current model on a labeled test set); cached per version."""
    ask = body or EvaluateRequest()
    examples = None if ask.examples is None else [e.model_dump(exclude_none=True) for e in ask.examples]

    def run() -> tuple[Evaluation, JSON | None]:
        insight = encoders.of_tenant(tenant_id, ask.version).insight
        evaluation = insight.evaluate(tenant_id, version=ask.version, examples=examples)
        advice = encoders.advise(tenant_id, evaluation.version) if examples is None else None
        return evaluation, advice

    return replies.evaluated(*await heavy.run(request, tenant_id, run))


@router.post(
    "/tenants/{tenant_id}/suggest", response_model=SuggestResponse, responses=ERROR_RESPONSES, tags=["insight"]
)
async def suggest(
    tenant_id: TenantPath, body: SuggestRequest, encoders: ServedTiers, heavy: Heavy, request: Request
) -> SuggestResponse:
    """Which of these unlabeled texts to label next (uncertain and diverse), each with the predicted label to
    confirm or correct; send the labeled ones back with POST /adapt `mode: append`."""

    def run() -> SuggestResult:
        return encoders.of_tenant(tenant_id).insight.suggest(tenant_id, body.texts, body.k)

    return replies.suggested(await heavy.run(request, tenant_id, run))


@router.delete("/tenants/{tenant_id}", status_code=204, responses=ERROR_RESPONSES, tags=["tenants"])
def delete_tenant(tenant_id: TenantPath, tenants: Tenants) -> Response:
    """Delete a tenant's model and support set."""
    tenants.delete(tenant_id)
    return Response(status_code=204)


@router.get("/encoders", response_model=EncoderList, responses=ERROR_RESPONSES, tags=["tenants"])
def list_encoders(encoders: ServedTiers) -> EncoderList:
    """The encoders this server serves (the first is the default for new tenants); `/adapt` picks one with
    `encoder`, and a tenant keeps it until a `replace` names another."""
    return replies.encoder_list(encoders.describe())


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
async def healthz() -> HealthResponse:
    """Liveness: the process is up (answered on the event loop: no thread-pool hop for a constant)."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "Not ready."}},
    tags=["health"],
)
def readyz(store: Store, readiness: ReadinessInfo) -> ReadyResponse | JSONResponse:
    """Readiness: the encoder is loaded and the store answers (states and ids only: details go to the log)."""
    try:
        store.ping()
    except StoreUnavailable as exc:
        log.warning("not ready: %s", exc)
        return error_response(503, "store_unavailable", "the tenant store is unreachable; retry shortly")
    return ReadyResponse(
        status="ready",
        encoder_fingerprint=readiness.encoder_fingerprint,
        checkpoint=readiness.checkpoint,
        store=readiness.store,
    )
