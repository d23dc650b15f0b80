"""Request and response bodies (each with an example for the OpenAPI page)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

TENANT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
TenantId = Annotated[
    str,
    Field(pattern=TENANT_ID_PATTERN, description="1-64 characters from A-Z a-z 0-9 . _ -", examples=["acme-support"]),
]


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="An example utterance.", examples=["I still have not received my card"])
    label: str = Field(description="Its label.", examples=["card_arrival"])


class AdaptRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "examples": [
                        {"text": "my card has not arrived yet", "label": "card_arrival"},
                        {"text": "when will the new card get here?", "label": "card_arrival"},
                        {"text": "what is the exchange rate for euros", "label": "exchange_rate"},
                        {"text": "how much is a dollar in pounds today", "label": "exchange_rate"},
                    ],
                }
            ]
        },
    )
    tenant_id: TenantId
    examples: list[Example] = Field(description="The support set: labeled examples (a few per label).")
    labels: list[str] | None = Field(
        None, description="Optional declared label set (output order); each must have an example."
    )
    inner_steps: int | None = Field(
        None, ge=0, le=200, description="Inner-loop SGD steps; default from the loaded checkpoint."
    )


class AdaptResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 1,
                    "labels": ["card_arrival", "exchange_rate"],
                    "counts": {"card_arrival": 2, "exchange_rate": 2},
                    "n_examples": 4,
                    "inner_steps": 10,
                    "encoder_fingerprint": "3f1c9a0b7d2e4f51",
                    "timings_ms": {"embed": 9.1, "inner_loop": 2.3, "store": 0.4, "total": 11.8},
                }
            ]
        }
    )
    tenant_id: str
    version: int = Field(description="New model version (strictly increasing per tenant).")
    labels: list[str]
    counts: dict[str, int] = Field(description="Examples per label.")
    n_examples: int
    inner_steps: int
    encoder_fingerprint: str
    timings_ms: dict[str, float]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tenant_id": "acme-support", "texts": ["where is my card?"], "top_k": 2}]},
    )
    tenant_id: TenantId
    texts: list[str] = Field(description="Texts to classify.")
    top_k: int = Field(1, description="How many ranked labels to return per text.")


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="Probability of the label (softmax over the tenant's labels).")


class PredictionOut(BaseModel):
    label: str = Field(description="Most probable label.")
    score: float = Field(description="Its probability.")
    top_k: list[LabelScore]


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 1,
                    "predictions": [
                        {
                            "label": "card_arrival",
                            "score": 0.97,
                            "top_k": [
                                {"label": "card_arrival", "score": 0.97},
                                {"label": "exchange_rate", "score": 0.03},
                            ],
                        }
                    ],
                    "timings_ms": {"load": 0.2, "embed": 6.0, "head": 0.1, "total": 6.4},
                }
            ]
        }
    )
    tenant_id: str
    version: int = Field(description="Version of the model that answered.")
    predictions: list[PredictionOut]
    timings_ms: dict[str, float]


class TenantInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 3,
                    "status": "ready",
                    "labels": ["card_arrival", "exchange_rate"],
                    "counts": {"card_arrival": 5, "exchange_rate": 5},
                    "n_examples": 10,
                    "inner_steps": 10,
                    "encoder_fingerprint": "3f1c9a0b7d2e4f51",
                    "created_at": "2026-11-24T08:00:00.000+00:00",
                    "head_bytes": 3320,
                }
            ]
        }
    )
    tenant_id: str
    version: int
    status: str = Field(description="`ready`, or why the stored head cannot serve as is: `stale`, `corrupt`, `schema`.")
    labels: list[str]
    counts: dict[str, int]
    n_examples: int
    inner_steps: int | None
    encoder_fingerprint: str | None
    created_at: str | None
    head_bytes: int


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code.", examples=["too_few_labels"])
    message: str = Field(description="What went wrong, for humans.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"code": "unknown_tenant", "message": "tenant 'x' has no model"}}]}
    )
    error: ErrorBody


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "encoder_fingerprint": "3f1c9a0b7d2e4f51", "checkpoint": None, "store": "redis"}
            ]
        }
    )
    status: str
    encoder_fingerprint: str
    checkpoint: str | None
    store: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown tenant."},
    409: {"model": ErrorResponse, "description": "The stored model cannot be used or repaired."},
    422: {"model": ErrorResponse, "description": "Invalid request (see `error.code`)."},
    503: {"model": ErrorResponse, "description": "The tenant store is unreachable (`store_unavailable`)."},
}
