"""Bodies of the server routes: /encoders, /healthz, /readyz."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.ml.registry import DEFAULT_ENCODER


class EncoderInfo(BaseModel):
    name: str
    default: bool = Field(description="New tenants get this encoder unless `/adapt` names another.")
    dim: int = Field(description="Embedding dimensions.")
    fingerprint: str = Field(description="Changes when the weights or the checkpoint change (tenants re-adapt).")
    checkpoint: str | None = Field(description="The meta-trained checkpoint applied (folder name), if any.")
    precision: str = Field(description="Serving precision of the encoder weights.")


class EncoderList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "encoders": [
                        {
                            "name": DEFAULT_ENCODER,
                            "default": True,
                            "dim": 384,
                            "fingerprint": "3f1c9a0b7d2e4f51",
                            "checkpoint": "minilm-protomaml",
                            "precision": "float32",
                        }
                    ]
                }
            ]
        }
    )
    encoders: list[EncoderInfo]


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
