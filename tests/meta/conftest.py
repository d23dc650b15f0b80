"""Fixtures for meta-learning tests: fresh tiny encoders (meta-training mutates them) and fixture data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.ml.encoder import SentenceEncoder
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def tokenizer():
    return packaged_tokenizer()


@pytest.fixture
def make_tiny(tokenizer) -> Callable[..., SentenceEncoder]:
    """Build a 2-layer 32-dim random BERT (same seed -> same weights); `sha` fakes the base hash."""

    def build(seed: int = 0, sha: str = "0" * 64) -> SentenceEncoder:
        return build_tiny_encoder(tokenizer, seed, sha)

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
