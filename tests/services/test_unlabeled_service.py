"""/adapt with a tenant's unlabeled pool, through the service with the real encoder (CLINC150 sample, 5 intents,
3 shots): where cross-validation rises the head is fitted with the pool and differs from the one without it, a
rebuild refits it the same way, `off` or a pool emptied meanwhile leaves it out, and the tenant report
cross-validates a version as it was fitted, with or without the pool."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from app.bootstrap import build_runtime
from app.config import Settings
from app.ml.embedder import EncoderEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import TenantHead
from app.ml.loading import LoadedModel
from app.ml.tenant_report_types import SingleLabelReport
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.store import MemoryStore

SAMPLE = Path(__file__).parents[1] / "fixtures" / "clinc150_sample.jsonl"


def _split(shots: int, seed: int) -> tuple[list[dict[str, str]], list[str]]:
    """Support (`shots` texts per label) and pool (every other text, unlabeled)."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row["text"])
    support, pool = [], []
    for label, texts in sorted(by_label.items()):
        rng.shuffle(texts)
        support += [{"text": text, "label": label} for text in texts[:shots]]
        pool += texts[shots:]
    return support, pool


@pytest.fixture
def service(real_model: LoadedModel) -> AdaptationService:
    context = TierContext(
        EncoderEmbedder(real_model.encoder),
        real_model.inner,
        embeddings=EmbeddingLRU(1000),
        pool_embeddings=EmbeddingLRU(1000),
    )
    return AdaptationService(context, MemoryStore())


def _head(service: AdaptationService, tenant: str) -> torch.Tensor:
    """The stored head's linear layer, weight and bias as one vector."""
    stored = service.store.load(tenant)
    assert stored is not None
    head = TenantHead.from_bytes(stored.head)
    return _layer(head)


def _layer(head: TenantHead) -> torch.Tensor:
    return torch.cat([head.weight.dequantize().flatten(), head.bias])


def test_a_pool_that_cross_validation_favours_is_fitted_with_and_rebuilt_with(service: AdaptationService) -> None:
    support, pool = _split(shots=3, seed=1)
    service.adapt("acme", support, label_names="off")
    service.store.add_unlabeled("acme", pool, 10_000)
    used = service.adapt("acme", support, label_names="off")
    assert used.unlabeled is not None and used.unlabeled.used
    assert used.unlabeled.cv_accuracy_with > used.unlabeled.cv_accuracy_without  # type: ignore[operator]
    assert used.n_embedded >= len(pool)  # the pool went through the encoder
    with_pool = _head(service, "acme")
    off = service.adapt("acme", support, label_names="off", unlabeled="off")
    assert off.unlabeled is not None and not off.unlabeled.used
    assert not torch.allclose(_head(service, "acme"), with_pool)

    service.adapt("acme", support, label_names="off")  # "auto" again: fitted with the pool
    rebuilt = service.rebuild("acme", service.store.current_version("acme") or 0, None)
    assert rebuilt is not None
    torch.testing.assert_close(_layer(rebuilt[1]), with_pool)
    service.store.clear_unlabeled("acme")
    emptied = service.rebuild("acme", rebuilt[0], None)
    assert emptied is not None and not torch.allclose(_layer(emptied[1]), with_pool)


def test_the_report_of_a_version_fitted_with_the_pool_cross_validates_with_it(real_model: LoadedModel) -> None:
    settings = Settings(store="memory", checkpoint="none", batching_enabled=False, _env_file=None)
    runtime = build_runtime(settings, real_model)
    tier = runtime.tiers.default
    support, pool = _split(shots=3, seed=1)
    tier.adaptation.adapt("acme", support, label_names="off")
    runtime.store.add_unlabeled("acme", pool, 10_000)
    used = tier.adaptation.adapt("acme", support, label_names="off")
    assert used.unlabeled is not None and used.unlabeled.used
    with_pool = tier.insight.evaluate("acme").report
    tier.adaptation.adapt("acme", support, label_names="off", unlabeled="off")
    without = tier.insight.evaluate("acme").report
    assert isinstance(with_pool, SingleLabelReport) and isinstance(without, SingleLabelReport)
    assert with_pool.accuracy > without.accuracy  # the folds are the same; only the pool differs
    runtime.close()


def test_an_append_to_a_version_fitted_with_the_pool_keeps_it_from_the_pool_cache(service: AdaptationService) -> None:
    support, pool = _split(shots=3, seed=1)
    service.adapt("acme", support, label_names="off")
    service.store.add_unlabeled("acme", pool, 10_000)
    assert service.adapt("acme", support, label_names="off").unlabeled.used  # type: ignore[union-attr]
    extra = [{"text": "send 40 dollars to my savings account", "label": "transfer"}]
    appended = service.adapt("acme", extra, mode="append")
    assert appended.unlabeled is not None and appended.unlabeled.used
    assert appended.unlabeled.cv_accuracy_with is None  # not decided again
    assert appended.n_embedded == 1  # the new example; the pool came from the tier's pool cache
    decided = service.adapt("acme", extra, mode="append", unlabeled="auto")  # naming the mode decides again
    assert decided.unlabeled is not None and decided.unlabeled.cv_accuracy_with is not None


def test_emptying_the_pool_forgets_its_embeddings(real_model: LoadedModel) -> None:
    settings = Settings(store="memory", checkpoint="none", batching_enabled=False, _env_file=None)
    runtime = build_runtime(settings, real_model)
    adaptation = runtime.tiers.default.adaptation
    support, pool = _split(shots=3, seed=1)
    adaptation.adapt("acme", support, label_names="off")
    runtime.pools.add("acme", pool)
    assert adaptation.adapt("acme", support, label_names="off").n_embedded >= len(pool)
    assert adaptation.adapt("acme", support, label_names="off").n_embedded == 0  # all cached, the pool's too
    assert runtime.pools.clear("acme") == len(pool)
    runtime.pools.add("acme", pool)
    assert adaptation.adapt("acme", support, label_names="off").n_embedded == len(pool)  # the pool embedded anew
    runtime.close()
