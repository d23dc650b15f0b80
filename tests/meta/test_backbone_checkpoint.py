"""Cached-bottom backbone equals the encoder; checkpoints round-trip and refuse another base."""

from __future__ import annotations

import pytest
import torch

from app.meta.backbone import Backbone, trained_prefixes
from app.ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from app.ml.learner import InnerLoopParams

TEXTS = ["my card was declined", "how do i top up", "ok", "what is the exchange rate for euros today please"]


@pytest.mark.parametrize("train_layers", [1, 2, "none", "all"])
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


def test_trained_prefixes() -> None:
    class Fake:
        class transformer:
            class encoder:
                layer = [0] * 6

    assert trained_prefixes(Fake, 2) == ["encoder.layer.4.", "encoder.layer.5."]  # type: ignore[arg-type]
    assert trained_prefixes(Fake, "none") == []  # type: ignore[arg-type]
    assert trained_prefixes(Fake, "all") == [""]  # type: ignore[arg-type]


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
    assert fresh.fingerprint != make_tiny().fingerprint  # adapted heads become stale

    with pytest.raises(CheckpointError, match="base encoder"):
        load_checkpoint(folder, make_tiny(sha="1" * 64))
