"""The real encoder reproduces SentenceTransformer.encode; weights are verified; fingerprints are stable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from app.config import PACKAGED_ENCODER
from app.ml.encoder import EncoderIntegrityError, load_encoder, resolve_source, trace_inference_graph
from tests.tiny_encoder import build_tiny_encoder, build_tiny_mpnet, packaged_tokenizer

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


def test_served_encoder_embeds_through_a_trace_with_the_eager_numbers(real_model) -> None:
    """The default settings trace the encoder; its embeddings (and so the fingerprint) are the eager ones."""
    encoder = real_model[0]
    assert encoder.inference_graph is not None
    texts = [*SENTENCES, "word " * 300, "ok"]
    traced = encoder.embed(texts, batch_size=3)
    graph, encoder.inference_graph = encoder.inference_graph, None
    try:
        eager = encoder.embed(texts, batch_size=3)
    finally:
        encoder.inference_graph = graph
    torch.testing.assert_close(traced, eager, atol=1e-5, rtol=0)


@pytest.mark.parametrize("build", [build_tiny_encoder, build_tiny_mpnet])
def test_trace_reproduces_bert_and_mpnet(build) -> None:
    encoder = build(packaged_tokenizer())
    eager = encoder.embed(SENTENCES, batch_size=2)
    assert trace_inference_graph(encoder) and encoder.inference_graph is not None
    torch.testing.assert_close(encoder.embed(SENTENCES, batch_size=2), eager, atol=1e-6, rtol=0)


class _BranchesOnPadding(nn.Module):
    """Negates its output when nothing is padded: a Python branch on values, which a trace records one side of."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, return_dict: bool = True, **_: object):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if bool(attention_mask.all()):
            hidden = -hidden
        return BaseModelOutput(last_hidden_state=hidden) if return_dict else (hidden,)


class _RefusesTracing(_BranchesOnPadding):
    def forward(self, input_ids, attention_mask, return_dict: bool = True, **_: object):
        if torch.jit.is_tracing():
            raise RuntimeError("cannot be traced")
        return super().forward(input_ids, attention_mask, return_dict)


@pytest.mark.parametrize("wrapper", [_BranchesOnPadding, _RefusesTracing])
def test_a_trace_that_differs_or_fails_leaves_the_eager_encoder(wrapper, caplog) -> None:
    encoder = build_tiny_encoder(packaged_tokenizer())
    encoder.transformer = wrapper(encoder.transformer)
    eager = encoder.embed(SENTENCES)
    assert not trace_inference_graph(encoder)
    assert encoder.inference_graph is None and "serving the eager encoder" in caplog.text
    torch.testing.assert_close(encoder.embed(SENTENCES), eager)


def test_embed_restores_training_mode() -> None:
    encoder = build_tiny_encoder(packaged_tokenizer()).train()
    encoder.embed(SENTENCES)
    assert encoder.training and encoder.transformer.training
