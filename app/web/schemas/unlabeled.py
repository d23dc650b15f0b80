"""Bodies of /tenants/{id}/unlabeled: the tenant's pool of unlabeled texts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UnlabeledRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["card still not here", "what rate do you use for yen"]}]},
    )
    texts: list[str] = Field(
        description="Unlabeled texts (1 to `max_examples`), e.g. what /predict was sent. Kept per tenant, at most "
        "`max_unlabeled` (the oldest go first; a repeated text becomes the newest); /suggest picks from them when "
        "it is sent no texts, and /adapt fits with them where cross-validation shows a gain."
    )


class UnlabeledResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"tenant_id": "acme-support", "added": 2, "repeated": 0, "dropped": 0, "size": 2, "max_texts": 10000}
            ]
        }
    )
    tenant_id: str
    added: int = Field(description="Texts new to the pool.")
    repeated: int = Field(description="Texts already in it (now the newest), or given twice in the request.")
    dropped: int = Field(description="Oldest texts removed to keep the pool within `max_texts`.")
    size: int = Field(description="Texts in the pool now.")
    max_texts: int = Field(description="The pool's cap (`max_unlabeled`).")


class PoolResponse(BaseModel):
    tenant_id: str
    size: int = Field(description="Texts in the pool.")
    max_texts: int = Field(description="The pool's cap (`max_unlabeled`).")


class PoolCleared(BaseModel):
    tenant_id: str
    removed: int = Field(description="Texts the pool held.")


class UnlabeledOut(BaseModel):
    """Whether the tenant's unlabeled texts shaped this version's head."""

    mode: str = Field(description="`auto` or `off`.")
    used: bool = Field(description="Whether the head was fitted with the unlabeled texts.")
    reason: str = Field(description="Why (in words).")
    pool_size: int = Field(0, description="Unlabeled texts available (the pool minus texts of the support set).")
    cv_accuracy_with: float | None = Field(None, description="Cross-validated accuracy with the texts.")
    cv_accuracy_without: float | None = Field(None, description="Cross-validated accuracy without them.")
