"""Bodies of the admin routes: API keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.web.schemas.common import TenantId


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "acme backend", "tenants": ["acme-support"], "admin": False}]},
    )
    name: str = Field("", max_length=100, description="Free-form label for humans.")
    tenants: list[TenantId] = Field(default_factory=list, max_length=1000, description="Tenants the key may use.")
    admin: StrictBool = Field(False, description="Admin keys reach every tenant and manage keys.")

    @model_validator(mode="after")
    def _scoped_or_admin(self) -> KeyCreate:
        if not self.admin and not self.tenants:
            raise ValueError("a non-admin key needs at least one tenant")
        return self


class KeyInfo(BaseModel):
    key_id: str
    name: str
    admin: bool
    tenants: list[str]
    prefix: str = Field(description="First characters of the key, to recognise it; never the key.")
    created_at: str


class KeyCreated(KeyInfo):
    key: str = Field(description="The API key. Shown once: only its sha256 is stored.")


class KeyList(BaseModel):
    keys: list[KeyInfo]
