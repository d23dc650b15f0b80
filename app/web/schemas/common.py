"""Shared pieces of the request and response bodies: tenant id and encoder name patterns, the error body."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Request bodies use strict scalars: a JSON string is never a number or a boolean, nor a boolean a number.

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ENCODER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
TenantId = Annotated[
    str,
    Field(
        pattern=TENANT_ID_PATTERN,
        description="1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit",
        examples=["acme-support"],
    ),
]


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code.", examples=["too_few_labels"])
    message: str = Field(description="What went wrong, for humans.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"code": "unknown_tenant", "message": "tenant 'x' has no model"}}]}
    )
    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown tenant."},
    409: {"model": ErrorResponse, "description": "The stored model cannot be used or repaired."},
    422: {"model": ErrorResponse, "description": "Invalid request (see `error.code`)."},
    503: {"model": ErrorResponse, "description": "The tenant store is unreachable (`store_unavailable`)."},
}
