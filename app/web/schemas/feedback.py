"""Bodies of POST /tenants/{id}/feedback: corrections of predictions, and the new version they made."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.web.schemas.tenants import AdaptResponse


class CorrectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The text that was classified.", examples=["is my card on its way"])
    label: str = Field(
        description="Its right label. A label the tenant does not have yet is added (as an append adds it).",
        examples=["card_arrival"],
    )
    predicted: str | None = Field(
        None, description="The label the model predicted (optional; for the caller's own audit).", examples=["refund"]
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "corrections": [{"text": "is my card on its way", "label": "card_arrival", "predicted": "refund"}],
                    "expected_version": 3,
                }
            ]
        },
    )
    corrections: list[CorrectionIn] = Field(
        description="Texts with their right labels (1 to `max_texts`). A text the tenant holds with the same label "
        "is ignored; one it holds with another label is relabelled (the correction replaces the old example); "
        "within one request the last correction of a text wins."
    )
    expected_version: StrictInt | None = Field(
        None,
        ge=1,
        description="Compare-and-set: apply only if this is the tenant's current version (else 409 "
        "`concurrent_update`); default: append to whatever is current.",
    )


class FeedbackResponse(AdaptResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme-support",
                    "version": 4,
                    "labels": ["card_arrival", "exchange_rate", "refund"],
                    "counts": {"card_arrival": 6, "exchange_rate": 5, "refund": 5},
                    "n_examples": 16,
                    "n_descriptions": 0,
                    "n_embedded": 1,
                    "inner_steps": 50,
                    "oos_threshold": 0.41,
                    "encoder_fingerprint": "3f1c9a0b7d2e4f51",
                    "timings_ms": {"embed": 6.1, "inner_loop": 2.4, "store": 0.5, "total": 9.3},
                    "added": 1,
                    "ignored_duplicates": 0,
                    "relabelled": 0,
                }
            ]
        }
    )
    added: int = Field(description="Corrections stored as new examples (relabelled texts included).")
    ignored_duplicates: int = Field(
        description="Corrections the tenant already held with the same label, or repeated in the request."
    )
    relabelled: int = Field(0, description="Stored examples whose label a correction replaced.")
