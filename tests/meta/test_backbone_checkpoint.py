"""Cached-bottom backbone equals the encoder; checkpoints round-trip and refuse another base."""

from __future__ import annotations

import pytest
import torch

from app.meta.backbone import Backbone, trained_prefixes
from app.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from app.ml.learner import InnerLoopParams
from tests.tiny_encoder import build_tiny_mpnet, packaged_tokenizer

TEXTS = ["my card was declined", "how do i top up", "ok", "what is the exchange rate for euros today please"]


@pytest.mark.parametrize("train_layers", [1, 2, "none", "norm", "bias", "all"])
def test_backbone_matches_encoder_forward(train_layers, make_tiny, tmp_path) -> None:
    encoder = make_tiny()
    reference = encoder.embed(TEXTS)
    encoder.eval()  # embed() restores the wrapper's (training) mode; compare without dropout
    backbone = Backbone(encoder, train_layers, cache_dir=tmp_path)
    backbone.prepare(TEXTS)
    out = backbone(TEXTS)
    torch.testing.assert_close(out.detach(), reference, atol=2e-3, rtol=0)  # cache is float16
    assert out.requires_grad == (train_layers != "none")
    again = Backbone(encoder, train_layers, cache_dir=tmp_path)  # second one reads the disk cache
    torch.testing.assert_close(again(TEXTS).detach(), out.detach())


def test_norm_backbone_stays_exact_while_its_layernorm_trains(make_tiny, tmp_path) -> None:
    """Pooling commutes with the last LayerNorm's affine: after changing it, the cached path still
    equals a full forward pass, and only that affine receives gradients."""
    encoder = make_tiny()
    encoder.eval()
    backbone = Backbone(encoder, "norm", cache_dir=tmp_path)
    backbone.prepare(TEXTS)
    assert {id(p) for p in backbone.trainable_parameters()} == {id(p) for p in backbone.last_norm.parameters()}
    with torch.no_grad():
        backbone.last_norm.weight.mul_(torch.linspace(0.5, 1.5, backbone.last_norm.weight.numel()))
        backbone.last_norm.bias.add_(0.1)
    torch.testing.assert_close(backbone(TEXTS).detach(), encoder.embed(TEXTS), atol=2e-3, rtol=0)
    backbone(TEXTS).sum().backward()
    assert backbone.last_norm.weight.grad is not None and backbone.last_norm.weight.grad.abs().sum() > 0


def test_bias_backbone_trains_only_biases_and_layernorms(make_tiny, tmp_path) -> None:
    """BitFit-style: exactly the layers' biases and LayerNorm affines get gradients; after changing
    them the cached path still equals a full forward pass."""
    encoder = make_tiny()
    encoder.eval()
    backbone = Backbone(encoder, "bias", cache_dir=tmp_path)
    backbone.prepare(TEXTS)
    trainable = {name for name, p in encoder.transformer.named_parameters() if p.requires_grad}
    layer_names = {name for name, _ in encoder.transformer.named_parameters() if name.startswith("encoder.layer.")}
    assert trainable == {n for n in layer_names if n.endswith(".bias") or ".LayerNorm." in n}
    assert not any(name.startswith("embeddings.") for name in trainable)
    with torch.no_grad():
        for name, param in encoder.transformer.named_parameters():
            if name in trainable:
                param.add_(0.05)
    torch.testing.assert_close(backbone(TEXTS).detach(), encoder.embed(TEXTS), atol=2e-3, rtol=0)
    backbone(TEXTS).sum().backward()
    grads = {n for n, p in encoder.transformer.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= trainable


def test_trained_prefixes() -> None:
    class Fake:
        class transformer:
            class encoder:
                layer = [0] * 6

    assert trained_prefixes(Fake, 2) == ["encoder.layer.4.", "encoder.layer.5."]  # type: ignore[arg-type]
    assert trained_prefixes(Fake, "none") == []  # type: ignore[arg-type]
    assert trained_prefixes(Fake, "all") == [""]  # type: ignore[arg-type]
    assert trained_prefixes(Fake, "norm") == ["encoder.layer.5.output.LayerNorm."]  # type: ignore[arg-type]


def test_checkpoint_round_trip_and_base_mismatch(make_tiny, tmp_path) -> None:
    trained = make_tiny()
    with torch.no_grad():
        for name, param in trained.transformer.named_parameters():
            if name.startswith("encoder.layer.1."):
                param.add_(0.01)
    inner = InnerLoopParams(7, torch.full((32,), 0.5), torch.tensor(0.25), torch.tensor(2.0))
    folder = save_checkpoint(tmp_path / "ckpt", trained, inner, ["encoder.layer.1."], {"algorithm": "metasgd"})

    fresh = make_tiny()
    assert not torch.allclose(fresh.embed(TEXTS), trained.embed(TEXTS))
    loaded = load_checkpoint(folder, fresh)
    torch.testing.assert_close(fresh.embed(TEXTS), trained.embed(TEXTS))
    assert loaded.steps == 7
    torch.testing.assert_close(loaded.lr_weight, inner.lr_weight)
    torch.testing.assert_close(loaded.log_scale, inner.log_scale)
    assert loaded.lr_norm is None  # a head-only inner loop stays head-only
    assert fresh.fingerprint != make_tiny().fingerprint  # adapted heads become stale

    with_norm = InnerLoopParams(7, torch.tensor(0.5), torch.tensor(0.25), torch.tensor(2.0), torch.tensor(0.125))
    folder = save_checkpoint(tmp_path / "norm", trained, with_norm, [], {"algorithm": "metasgd"})
    assert load_checkpoint(folder, make_tiny()).lr_norm == 0.125  # /adapt then adapts the norm too

    with pytest.raises(CheckpointError, match="base encoder"):
        load_checkpoint(folder, make_tiny(sha="1" * 64))


def test_float16_checkpoint_is_half_the_size_and_loads_into_float32(make_tiny, tmp_path) -> None:
    trained = make_tiny()
    with torch.no_grad():
        for param in trained.transformer.parameters():
            param.add_(0.01)
    inner = InnerLoopParams(3, torch.tensor(0.5), torch.tensor(0.25), torch.tensor(2.0))
    full = save_checkpoint(tmp_path / "f32", trained, inner, ["encoder."], {"algorithm": "protomaml"})
    half = save_checkpoint(tmp_path / "f16", trained, inner, ["encoder."], {"algorithm": "protomaml"}, torch.float16)
    full_bytes, half_bytes = (f / "delta.safetensors" for f in (full, half))
    assert half_bytes.stat().st_size < 0.6 * full_bytes.stat().st_size
    fresh = make_tiny()
    loaded = load_checkpoint(half, fresh)
    assert all(p.dtype == torch.float32 for p in fresh.transformer.parameters())
    torch.testing.assert_close(fresh.embed(TEXTS), trained.embed(TEXTS), atol=2e-3, rtol=0)
    assert loaded.lr_weight.dtype == torch.float32  # inner-loop tensors stay float32


def test_adapt_uses_a_checkpoints_norm_adapting_inner_loop(make_tiny, tmp_path) -> None:
    """A checkpoint with `lr_norm`: `/adapt`'s service code stores a head with its own last-layer norm."""
    from app.ml.head import TenantHead
    from app.services.adaptation import AdaptationService
    from app.services.context import TierContext
    from app.store import MemoryStore

    encoder = make_tiny()
    inner = InnerLoopParams(5, torch.tensor(0.04), torch.tensor(0.04), torch.tensor(10.0).log(), torch.tensor(0.5))
    folder = save_checkpoint(tmp_path / "norm", encoder, inner, [], {"algorithm": "metasgd"})
    served = make_tiny()
    service = AdaptationService(TierContext(served, load_checkpoint(folder, served)), MemoryStore())
    examples = [{"text": t, "label": t.split()[0]} for t in ["card lost", "card stolen", "rate today", "rate euro"]]
    result = service.adapt("acme", examples)
    head = TenantHead.from_bytes(service.store.load("acme").head)
    assert result.version == 1 and head.norm_gain is not None and head.norm_shift is not None
    assert not torch.equal(head.norm_gain, torch.ones_like(head.norm_gain))
    probabilities = head.probabilities(served.embed(["card please"]))
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1))


def test_an_mpnet_encoder_trains_frozen_through_its_own_forward_and_refuses_layer_splits(tmp_path) -> None:
    """MPNet's layers take a relative position bias that the layer-by-layer path would drop."""
    encoder = build_tiny_mpnet(packaged_tokenizer())
    reference = encoder.embed(TEXTS)
    backbone = Backbone(encoder, "none", cache_dir=tmp_path)
    backbone.prepare(TEXTS)
    torch.testing.assert_close(backbone(TEXTS), reference)
    for train_layers in (1, "norm", "bias"):
        with pytest.raises(ValueError, match="only BERT-style"):
            Backbone(encoder, train_layers, cache_dir=tmp_path)
