"""A tier added through the encoder registry alone: one `EncoderSpec` registered in the test (a tiny random BERT
saved to a folder, with a text prefix and its own inner loop), served beside MiniLM, adapted and predicted with
over HTTP. Nothing outside this file knows it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.integrity import sha256_file
from app.ml.registry import DEFAULT_ENCODER, EncoderSpec, InnerDefaults, registered
from app.web.app import create_app
from tests.web.conftest import SUPPORT

TIER = "tiny-e5"
PREFIX = "query: "


@pytest.fixture
def tiny_spec(tmp_path: Path, tiny_encoder: SentenceEncoder) -> Iterator[EncoderSpec]:
    folder = tmp_path / "tiny-e5"
    tiny_encoder.transformer.save_pretrained(folder, safe_serialization=True)
    tiny_encoder.tokenizer.save_pretrained(folder)
    spec = EncoderSpec(
        name=TIER,
        source=str(folder),
        sha256=sha256_file(folder / "model.safetensors"),
        checkpoint=None,
        dim=32,
        inner=InnerDefaults(steps=7, lr=0.05, logit_scale=12.0),
        prefix=PREFIX,
    )
    with registered(spec):
        yield spec


@pytest.fixture
def served(settings: Settings, real_model: Any, tiny_spec: EncoderSpec, redis_store: Any) -> Iterator[TestClient]:
    both = settings.model_copy(update={"encoders": f"{DEFAULT_ENCODER},{TIER}"})
    with TestClient(create_app(both, model=real_model)) as client:
        yield client


def test_a_registered_tier_is_served_adapted_and_predicted_with(served: TestClient, tiny_spec: EncoderSpec) -> None:
    listed = {e["name"]: e for e in served.get("/encoders").json()["encoders"]}
    assert list(listed) == [DEFAULT_ENCODER, TIER]
    assert listed[TIER]["dim"] == tiny_spec.dim and not listed[TIER]["default"] and listed[TIER]["checkpoint"] is None

    tier = served.app.state.runtime.tiers.named(TIER)
    assert tier.adaptation.context.inner.steps == tiny_spec.inner.steps  # the spec's inner loop (no checkpoint)
    assert float(tier.adaptation.context.inner.log_scale.exp()) == pytest.approx(tiny_spec.inner.logit_scale)

    adapted = served.post("/adapt", json={"tenant_id": "e5", "encoder": TIER, "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    assert adapted.json()["encoder"] == TIER and adapted.json()["encoder_fingerprint"] == listed[TIER]["fingerprint"]
    reply = served.post("/predict", json={"tenant_id": "e5", "texts": ["my card never came"]}).json()
    assert reply["encoder"] == TIER and reply["predictions"][0]["label"] in {e["label"] for e in SUPPORT}
    assert served.get("/tenants/e5").json()["encoder"] == TIER
    default = served.post("/adapt", json={"tenant_id": "mini", "examples": SUPPORT}).json()
    assert default["encoder"] == DEFAULT_ENCODER  # the registry's default is still the default tier


def test_settings_override_a_registered_tier_and_forget_it_when_unregistered(tiny_spec: EncoderSpec) -> None:
    settings = Settings(encoders=TIER, tiers={TIER: {"inner_steps": 3, "sha256": ""}}, _env_file=None)
    resolved = settings.tier(TIER)
    assert resolved.inner.steps == 3 and resolved.sha256 is None and resolved.prefix == PREFIX
    assert resolved.source == tiny_spec.source and resolved.checkpoint is None


def test_an_unregistered_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="encoders must list"):
        Settings(encoders=f"{DEFAULT_ENCODER},{TIER}", _env_file=None)
    with pytest.raises(ValueError, match="unknown encoders"):
        Settings(tiers={TIER: {"checkpoint": "none"}}, _env_file=None)
