"""Service-level validation: a refused /adapt or /predict gets its code and changes nothing stored.

These cases never reach the encoder, so the services are built (through `app.bootstrap`, like a server) on the
tiny random encoder and the memory store; the HTTP mapping of the same codes is covered by tests/web.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.bootstrap import Runtime, build_runtime
from app.config import Settings
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams
from app.services.errors import ServiceError

CARDS = ["my card has not arrived yet", "when will my new card get here", "still waiting for the card"]
FX = ["what is the euro exchange rate", "how much is a dollar in pounds", "currency conversion rate today"]
REFUND = ["I want my money back", "please refund this purchase", "how do I get a refund"]
SUPPORT = [
    {"text": text, "label": label}
    for label, texts in (("card_arrival", CARDS), ("exchange_rate", FX), ("refund", REFUND))
    for text in texts
]


@pytest.fixture
def runtime(tiny_encoder: SentenceEncoder) -> Iterator[Runtime]:
    settings = Settings(
        store="memory",
        checkpoint="none",
        max_examples=50,
        max_labels=10,
        max_texts=8,
        max_text_chars=200,
        batching_enabled=False,
        _env_file=None,
    )
    runtime = build_runtime(settings, (tiny_encoder, InnerLoopParams.constant(2, 0.04, 10.0), None))
    runtime.tiers.default.adaptation.adapt("acme", SUPPORT)
    yield runtime
    runtime.close()


def _one_label() -> list[dict[str, str]]:
    return [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]


@pytest.mark.parametrize(
    ("examples", "options", "code"),
    [
        (_one_label(), {}, "too_few_labels"),
        ([], {}, "too_few_labels"),
        (SUPPORT, {"labels": ["card_arrival", "exchange_rate", "refund", "ghost"]}, "label_without_examples"),
        (SUPPORT, {"labels": ["card_arrival", "exchange_rate"]}, "undeclared_label"),
        ([*SUPPORT, {"text": "   ", "label": "refund"}], {}, "empty_text"),
        ([*SUPPORT, {"text": "", "label": "refund"}], {}, "empty_text"),
        ([*SUPPORT, {"text": "ok", "label": " "}], {}, "empty_label"),
        ([*SUPPORT, {"text": "x" * 201, "label": "refund"}], {}, "text_too_long"),
        (SUPPORT * 6, {}, "too_many_examples"),
        ([{"text": f"t{i}", "label": f"l{i}"} for i in range(11)], {}, "too_many_labels"),
    ],
)
def test_bad_adapt_changes_nothing(
    runtime: Runtime, examples: list[dict[str, str]], options: dict[str, Any], code: str
) -> None:
    before = runtime.store.load("acme")
    with pytest.raises(ServiceError) as refused:
        runtime.tiers.default.adaptation.adapt("acme", examples, **options)
    assert (refused.value.status, refused.value.code) == (422, code)
    assert refused.value.message
    after = runtime.store.load("acme")
    assert before is not None and after is not None and (after.version, after.head) == (1, before.head)


@pytest.mark.parametrize(
    ("texts", "top_k", "code"),
    [
        ([], 1, "no_texts"),
        (["  "], 1, "empty_text"),
        (["x" * 201], 1, "text_too_long"),
        (["a"] * 9, 1, "too_many_texts"),
        (["a"], 0, "invalid_top_k"),
        (["a"], 21, "invalid_top_k"),
    ],
)
def test_bad_predict(runtime: Runtime, texts: list[str], top_k: int, code: str) -> None:
    with pytest.raises(ServiceError) as refused:
        runtime.tiers.default.prediction.predict("acme", texts, top_k=top_k)
    assert (refused.value.status, refused.value.code) == (422, code)


def test_unknown_tenant_and_version(runtime: Runtime) -> None:
    for call in (
        lambda: runtime.tiers.default.prediction.predict("nobody", ["hi"]),
        lambda: runtime.tenants.describe("nobody"),
        lambda: runtime.tenants.versions("nobody"),
        lambda: runtime.tenants.rollback("nobody", 1),
    ):
        with pytest.raises(ServiceError) as refused:
            call()
        assert (refused.value.status, refused.value.code) == (404, "unknown_tenant")
    for call in (
        lambda: runtime.tiers.default.prediction.predict("acme", ["hi"], version=7),
        lambda: runtime.tenants.rollback("acme", 7),
    ):
        with pytest.raises(ServiceError) as refused:
            call()
        assert (refused.value.status, refused.value.code) == (404, "unknown_version")


def test_tenant_results_are_typed(runtime: Runtime) -> None:
    described = runtime.tenants.describe("acme")
    assert described.status == "ready" and described.model.version == 1
    assert described.model.counts == {"card_arrival": 3, "exchange_rate": 3, "refund": 3}
    history = runtime.tenants.versions("acme")
    assert history.current == 1 and [v.version for v in history.versions] == [1]
    assert runtime.tenants.list_ids(10) == (["acme"], None)
    assert runtime.tenants.existing(frozenset({"acme", "x"}), 10) == (["acme"], None)
