"""The real encoder reproduces SentenceTransformer.encode; weights are verified; fingerprints are stable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from app.config import PACKAGED_ENCODER
from app.ml.encoder import EncoderIntegrityError, load_encoder, resolve_source

SENTENCES = [
    "I still have not received my new card.",
    "What is the exchange rate for euros today?",
    "a",
    "Can I top up my account by bank transfer, and how long does it take to show up?",
]


def test_matches_sentence_transformers(real_model) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = real_model[0]
    reference = SentenceTransformer(str(resolve_source(PACKAGED_ENCODER)), device="cpu")
    expected = torch.tensor(reference.encode(SENTENCES, normalize_embeddings=True))
    ours = encoder.embed(SENTENCES)
    cosine = torch.nn.functional.cosine_similarity(ours, expected, dim=-1)
    assert cosine.min().item() >= 0.9999


def test_embeddings_are_unit_norm_and_order_independent(real_model) -> None:
    encoder = real_model[0]
    forward = encoder.embed(SENTENCES, batch_size=2)
    backward = encoder.embed(SENTENCES[::-1], batch_size=3).flip(0)
    torch.testing.assert_close(forward.norm(dim=-1), torch.ones(len(SENTENCES)))
    torch.testing.assert_close(forward, backward, atol=1e-5, rtol=1e-4)


def test_max_tokens_truncates(real_model) -> None:
    encoder = real_model[0]
    batch = encoder.tokenize(["word " * 1000])
    assert batch["input_ids"].shape[1] == encoder.max_tokens


def test_fingerprint_is_stable_and_tracks_the_delta(real_model) -> None:
    encoder = real_model[0]
    first = encoder.fingerprint
    assert first == encoder.fingerprint and len(first) == 16
    encoder.delta_sha256 = "f" * 64
    try:
        assert encoder.fingerprint != first
    finally:
        encoder.delta_sha256 = None
    assert encoder.fingerprint == first


def test_wrong_sha256_fails_loudly() -> None:
    with pytest.raises(EncoderIntegrityError, match="sha256"):
        load_encoder(PACKAGED_ENCODER, "0" * 64)


def test_tampered_weights_fail_loudly(tmp_path: Path) -> None:
    source = Path(resolve_source(PACKAGED_ENCODER))
    copy = tmp_path / "encoder"
    shutil.copytree(source, copy)
    with (copy / "model.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    from app.config import PACKAGED_ENCODER_SHA256

    with pytest.raises(EncoderIntegrityError):
        load_encoder(str(copy), PACKAGED_ENCODER_SHA256)


def test_int8_quantization_stays_close_and_changes_the_fingerprint() -> None:
    from app.config import PACKAGED_ENCODER_SHA256
    from app.ml.encoder import quantize_int8

    encoder = load_encoder(PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256)
    reference = encoder.embed(SENTENCES)
    fingerprint = encoder.fingerprint
    quantize_int8(encoder)
    quantized = encoder.embed(SENTENCES)
    assert encoder.fingerprint != fingerprint
    cosine = torch.nn.functional.cosine_similarity(reference, quantized, dim=-1)
    assert cosine.min().item() > 0.85  # measured 0.90-0.96: int8 is lossy for MiniLM, hence off by default


def test_length_groups_cover_all_texts_in_order_within_limits() -> None:
    from app.ml.encoder import length_groups

    lengths = sorted([7, 8, 9, 9, 10, 12, 13, 16, 19, 39, 47, 98, 98, 98])
    groups = length_groups(lengths, max_size=4, overhead=48)
    assert [i for group in groups for i in group] == list(range(len(lengths)))
    assert all(0 < len(group) <= 4 for group in groups)
    # passes of at most 4; 19 shares a pass with 39 and 47 (28 padding tokens < 48, the cost of a
    # pass), the 98s do not (47 + 2 x 51 padding tokens would cost more than a pass of their own)
    assert [[lengths[i] for i in g] for g in groups] == [[7, 8, 9, 9], [10, 12, 13, 16], [19, 39, 47], [98, 98, 98]]
    assert length_groups([], 4) == [] and length_groups([5] * 10, 64) == [range(0, 10)]


def test_forward_after_embed_is_deterministic(real_model) -> None:
    """`embed` restores the module's mode; a loaded encoder is in eval mode (no dropout)."""
    encoder = real_model[0]
    assert not encoder.training
    before = encoder.forward(SENTENCES[:2]).detach()
    encoder.embed(SENTENCES)
    torch.testing.assert_close(encoder.forward(SENTENCES[:2]).detach(), before)


def test_bf16_serving_stays_within_a_cosine_of_float32(real_model) -> None:
    from app.ml.encoder import use_bf16
    from app.ml.loading import serve_in_bf16

    fp32 = real_model[0]
    bf16 = use_bf16(load_encoder(PACKAGED_ENCODER, None, device="cpu"))
    cosine = torch.nn.functional.cosine_similarity(bf16.embed(SENTENCES), fp32.embed(SENTENCES), dim=-1)
    assert cosine.min().item() >= 0.999
    assert bf16.fingerprint == fp32.fingerprint  # interchangeable heads: no re-adaptation across a fleet
    assert not serve_in_bf16("float32", fp32) and serve_in_bf16("bfloat16", fp32)
