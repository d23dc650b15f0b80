"""HTTP routes: adapt, predict, tenants, health. Thin: validate shape, call a service, shape the reply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse

from app.api.deps import get_runtime
from app.api.errors import error_response
from app.api.schemas import (
    ERROR_RESPONSES,
    TENANT_ID_PATTERN,
    AdaptRequest,
    AdaptResponse,
    ErrorResponse,
    HealthResponse,
    LabelScore,
    PredictionOut,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    RollbackRequest,
    RollbackResponse,
    TenantInfo,
    VersionList,
)
from app.services.runtime import Runtime
from app.store.base import StoreUnavailable

router = APIRouter()
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN, description="Tenant id.", examples=["acme-support"])]


@router.post("/adapt", response_model=AdaptResponse, responses=ERROR_RESPONSES, tags=["tenants"])
def adapt(body: AdaptRequest, runtime: RuntimeDep) -> AdaptResponse:
    """Adapt a tenant's classifier from its labeled examples; replaces the previous version."""
    result = runtime.adaptation.adapt(
        body.tenant_id,
        [example.model_dump() for example in body.examples],
        labels=body.labels,
        inner_steps=body.inner_steps,
        mode=body.mode,
        remove_labels=body.remove_labels,
        label_descriptions=body.label_descriptions,
    )
    return AdaptResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        labels=result.labels,
        counts=result.counts,
        n_examples=sum(result.counts.values()),
        n_descriptions=result.n_descriptions,
        n_embedded=result.n_embedded,
        inner_steps=result.inner_steps,
        oos_threshold=result.oos_threshold,
        encoder_fingerprint=result.encoder_fingerprint,
        timings_ms=result.timings_ms,
    )


@router.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES, tags=["tenants"])
def predict(body: PredictRequest, runtime: RuntimeDep) -> PredictResponse:
    """Classify texts with the tenant's current model."""
    result = runtime.prediction.predict(
        body.tenant_id, body.texts, top_k=body.top_k, version=body.version, oos_threshold=body.oos_threshold
    )
    return PredictResponse(
        tenant_id=result.tenant_id,
        version=result.version,
        oos_threshold=result.oos_threshold,
        predictions=[
            PredictionOut(
                label=p.label,
                score=p.score,
                out_of_scope=p.out_of_scope,
                oos_score=p.oos_score,
                top_k=[LabelScore(label=label, score=score) for label, score in p.top_k],
            )
            for p in result.predictions
        ],
        timings_ms=result.timings_ms,
    )


@router.get("/tenants/{tenant_id}", response_model=TenantInfo, responses=ERROR_RESPONSES, tags=["tenants"])
def get_tenant(tenant_id: TenantPath, runtime: RuntimeDep) -> TenantInfo:
    """Describe a tenant's current model."""
    return TenantInfo(**runtime.tenants.describe(tenant_id))


@router.get("/tenants/{tenant_id}/versions", response_model=VersionList, responses=ERROR_RESPONSES, tags=["tenants"])
def list_versions(tenant_id: TenantPath, runtime: RuntimeDep) -> VersionList:
    """Retained versions of a tenant's model (newest first) with sizes and support statistics."""
    return VersionList(**runtime.tenants.versions(tenant_id))


@router.post(
    "/tenants/{tenant_id}/rollback", response_model=RollbackResponse, responses=ERROR_RESPONSES, tags=["tenants"]
)
def rollback(tenant_id: TenantPath, body: RollbackRequest, runtime: RuntimeDep) -> RollbackResponse:
    """Restore a retained earlier version; it becomes the current one under a new version number."""
    return RollbackResponse(**runtime.tenants.rollback(tenant_id, body.version))


@router.delete("/tenants/{tenant_id}", status_code=204, responses=ERROR_RESPONSES, tags=["tenants"])
def delete_tenant(tenant_id: TenantPath, runtime: RuntimeDep) -> Response:
    """Delete a tenant's model and support set."""
    runtime.tenants.delete(tenant_id)
    return Response(status_code=204)


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
def healthz() -> HealthResponse:
    """Liveness: the process is up."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "Not ready."}},
    tags=["health"],
)
def readyz(runtime: RuntimeDep) -> ReadyResponse | JSONResponse:
    """Readiness: the encoder is loaded and the store answers."""
    try:
        runtime.store.ping()
    except StoreUnavailable as exc:
        return error_response(503, "store_unavailable", f"store not reachable: {exc}")
    return ReadyResponse(
        status="ready",
        encoder_fingerprint=runtime.encoder.fingerprint,
        checkpoint=runtime.checkpoint,
        store=runtime.settings.store,
    )
