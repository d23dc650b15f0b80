"""all-mpnet-base-v2 from its five PyPI slices: assembled once, verified, loaded with eager attention.

The tests that need the slices run when the `mpnet` extra is installed (`pip install -e '.[mpnet]'`) and skip
otherwise; the missing-extra error is tested either way."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import pytest
import torch

from app.config import Settings
from app.ml.encoder import EncoderIntegrityError, load_encoder
from app.ml.packaged import MPNET_ENCODER, MPNET_ENCODER_SHA256, PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256
from app.ml.parts import INSTALL_HINT, MPNET, MissingParts, SlicedModel, assembled_folder
from app.ml.registry import DEFAULT_ENCODER


def _installed() -> bool:
    try:
        return all(metadata.distribution(name) is not None for name in MPNET.distributions)
    except metadata.PackageNotFoundError:
        return False


needs_mpnet = pytest.mark.skipif(not _installed(), reason=f"the mpnet extra is not installed ({INSTALL_HINT})")


def test_a_missing_slice_names_the_install_command(tmp_path: Path) -> None:
    absent = SlicedModel(("fewshot-no-such-part-001",), "model", "0" * 64)
    with pytest.raises(MissingParts, match=r"pip install -e '\.\[mpnet\]'"):
        assembled_folder(absent, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def _expected_sha256(**override: str) -> str | None:
    return Settings(tiers={DEFAULT_ENCODER: override}, _env_file=None).tier(DEFAULT_ENCODER).sha256


def test_pinned_hash_follows_the_packaged_source() -> None:
    assert _expected_sha256() == PACKAGED_ENCODER_SHA256
    assert _expected_sha256(source=MPNET_ENCODER) == MPNET_ENCODER_SHA256
    assert _expected_sha256(source=MPNET_ENCODER, sha256="pinned") == MPNET_ENCODER_SHA256
    assert _expected_sha256(source="/some/folder") is None
    assert _expected_sha256(sha256="") is None
    assert _expected_sha256(sha256="ab" * 32) == "ab" * 32
    assert PACKAGED_ENCODER != MPNET_ENCODER


@needs_mpnet
@pytest.mark.slow
def test_mpnet_assembles_once_verifies_and_embeds(tmp_path: Path) -> None:
    encoder = load_encoder(MPNET_ENCODER, MPNET_ENCODER_SHA256, device="cpu", models_dir=tmp_path)
    assert encoder.dim == 768 and encoder.transformer.config._attn_implementation == "eager"
    vectors = encoder.embed(["where is my new card?", "my card has not arrived", "what is the euro rate"])
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    weights = tmp_path / MPNET.folder / "model.safetensors"
    assembled_at = os.stat(weights).st_mtime_ns
    assert assembled_folder(MPNET, tmp_path) == weights.parent and os.stat(weights).st_mtime_ns == assembled_at
    with weights.open("r+b") as handle:  # tamper with the assembled weights: refused, not reassembled silently
        handle.seek(1000)
        handle.write(b"\0\0\0\0")
    with pytest.raises(EncoderIntegrityError, match="delete the folder"):
        assembled_folder(MPNET, tmp_path)


@needs_mpnet
@pytest.mark.slow
def test_a_server_on_mpnet_adapts_and_predicts(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    from fastapi.testclient import TestClient

    from app.web.app import create_app
    from tests.web.conftest import SUPPORT

    settings = Settings(
        encoder_source=MPNET_ENCODER,
        checkpoint="none",
        models_dir=str(tmp_path),
        store="redis",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}).status_code == 200
        reply = client.post("/predict", json={"tenant_id": "acme", "texts": ["my card never came"]}).json()
        assert reply["predictions"][0]["label"] == "card_arrival"
