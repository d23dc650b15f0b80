"""Label names as evidence: which names read as words, and the per-tenant decision (cross-validated with and without
the names) on embeddings built so that the names help, hurt, or are codes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from app.ml.label_names import (
    NamesChoice,
    apply_label_names,
    choose_label_names,
    name_texts,
    name_tokens,
    names_as_decided,
    readable_name,
)
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import SupportSet

INNER = InnerLoopParams.constant(5, 0.5, 10.0)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("card_arrival", "card arrival"),
        ("apple_pay_or_google_pay", "apple pay or google pay"),
        ("getRefund", "get refund"),
        ("getATMLocation", "get ATM location"),
        ("BookRestaurant", "book restaurant"),
        ("cancel-order", "cancel order"),
        ("billing/refunds", "billing refunds"),
        ("card.lost", "card lost"),
        ("NO_NODES_DETECTED", "no nodes detected"),
        ("Refund not showing up", "refund not showing up"),
        ("top_up_by_card_2", "top up by card 2"),
    ],
)
def test_names_that_read_as_words_become_words(name: str, words: str) -> None:
    assert readable_name(name) == words


@pytest.mark.parametrize(
    "name", ["INT_0042", "huffpost_3", "label_1", "LABEL_0", "q1", "x", "7", "a_b_c", "XQZ_12", "C3PO", "", "__"]
)
def test_codes_digits_and_single_letters_are_not_words(name: str) -> None:
    assert readable_name(name) is None


def test_tokens_split_on_separators_camel_case_and_digits() -> None:
    assert name_tokens("top_up-by/card.v2") == ["top", "up", "by", "card", "v", "2"]
    assert name_tokens("getATMLocation42") == ["get", "ATM", "Location", "42"]


def test_name_texts_follow_the_mode_and_leave_described_labels_alone() -> None:
    labels = ["card_arrival", "INT_0042", "exchange_rate"]
    described = {"exchange_rate": "how much is a euro"}
    assert name_texts(labels, described, "off") == {}
    assert name_texts(labels, described, "auto") == {"card_arrival": "card arrival"}
    assert name_texts(labels, described, "on") == {"card_arrival": "card arrival", "INT_0042": "INT 0042"}


def _clusters(names_at: str) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """4 labels in 16 dimensions: 3 noisy examples each, scattered so that their mean misses the label's true centre;
    names at the true centres ("centre") or at another label's centre ("wrong")."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(4, 16) * 3.0
    rows, targets = [], []
    for label in range(4):
        for _ in range(3):
            rows.append(centres[label] + 1.6 * torch.randn(16, generator=generator))
            targets.append(label)
    names = centres if names_at == "centre" else centres.roll(1, dims=0)
    return F.normalize(torch.stack(rows), dim=-1), targets, F.normalize(names, dim=-1)


def test_names_are_kept_when_cross_validation_does_not_drop_with_them() -> None:
    x, y, names = _clusters("centre")
    empty = (x[:0], [])
    use, with_, without = choose_label_names(x, y, ["a", "b", "c", "d"], empty, (names, [0, 1, 2, 3]), INNER)
    assert use and with_ >= without


def test_names_are_dropped_when_they_lower_cross_validated_accuracy() -> None:
    x, y, names = _clusters("wrong")
    empty = (x[:0], [])
    use, with_, without = choose_label_names(x, y, ["a", "b", "c", "d"], empty, (names, [0, 1, 2, 3]), INNER)
    assert not use and with_ < without


def _support(labels: list[str]) -> SupportSet:
    return SupportSet([f"text {i}" for i in range(12)], labels, [i // 3 for i in range(12)])


def _embedder(names_at: str, labels: list[str]):
    """Embeds the support texts and the labels' readable names as `_clusters` builds them."""
    x, _, names = _clusters(names_at)
    table = {f"text {i}": x[i] for i in range(12)} | {
        text: names[i] for i, label in enumerate(labels) if (text := readable_name(label) or label)
    }
    seen: list[list[str]] = []

    def embed(texts: list[str]) -> torch.Tensor:
        seen.append(list(texts))
        return torch.stack([table[text] for text in texts])

    return embed, seen


def test_auto_uses_word_names_that_help_and_says_so() -> None:
    labels = ["card_arrival", "exchange_rate", "lost_card", "refund_request"]
    embed, _ = _embedder("centre", labels)
    fitted, choice = apply_label_names(_support(labels), "auto", embed, INNER)
    assert choice.used and choice.n_named == 4 and "kept" in choice.reason
    assert fitted.descriptions == {label: readable_name(label) for label in labels}


def test_auto_drops_word_names_that_hurt() -> None:
    labels = ["card_arrival", "exchange_rate", "lost_card", "refund_request"]
    embed, _ = _embedder("wrong", labels)
    fitted, choice = apply_label_names(_support(labels), "auto", embed, INNER)
    assert not choice.used and "dropped" in choice.reason and fitted.descriptions == {}


def test_auto_never_uses_code_names_and_embeds_nothing_for_them() -> None:
    labels = ["INT_0000", "INT_0001", "INT_0002", "INT_0003"]
    embed, seen = _embedder("centre", labels)
    support = _support(labels)
    fitted, choice = apply_label_names(support, "auto", embed, INNER)
    assert choice == NamesChoice("auto", False, "no label name reads as words")
    assert fitted is support and seen == []
    on, forced = apply_label_names(support, "on", embed, INNER)
    assert forced.used and forced.n_named == 4 and on.descriptions["INT_0000"] == "INT 0000"


def test_off_one_shot_and_multi_label_tenants() -> None:
    labels = ["card_arrival", "exchange_rate"]
    embed, _ = _embedder("centre", labels)
    one_shot = SupportSet(["text 0", "text 3"], labels, [0, 1])
    assert not apply_label_names(one_shot, "off", embed, INNER)[1].used
    fitted, choice = apply_label_names(one_shot, "auto", embed, INNER)
    assert choice.used and "too few examples" in choice.reason and fitted.descriptions["card_arrival"] == "card arrival"
    multi = SupportSet(["text 0", "text 3"], labels, [], label_sets=[(0,), (1,)])
    assert not apply_label_names(multi, "off", embed, INNER)[1].used
    assert apply_label_names(multi, "on", embed, INNER)[1].used


def _multi_label(labels: list[str]) -> SupportSet:
    """`_support` as a multi-label tenant: each example with its one label."""
    single = [(i // 3,) for i in range(12)]
    return SupportSet([f"text {i}" for i in range(12)], labels, [], label_sets=single)


@pytest.mark.parametrize(("names_at", "kept"), [("centre", True), ("wrong", False)])
def test_multi_label_auto_decides_by_cross_validated_micro_f1(names_at: str, kept: bool) -> None:
    labels = ["card_arrival", "exchange_rate", "lost_card", "refund_request"]
    embed, _ = _embedder(names_at, labels)
    fitted, choice = apply_label_names(_multi_label(labels), "auto", embed, INNER)
    assert choice.used is kept and "micro-F1" in choice.reason
    assert choice.cv_accuracy_with is not None and choice.cv_accuracy_without is not None
    assert (choice.cv_accuracy_with >= choice.cv_accuracy_without) is kept
    assert bool(fitted.descriptions) is kept and fitted.label_sets == _multi_label(labels).label_sets


def test_a_stored_decision_is_replayed_without_deciding_again() -> None:
    support = SupportSet(["a", "b"], ["card_arrival", "INT_0001"], [0, 1], {"INT_0001": "its own description"})
    assert names_as_decided(support, "auto", False) is support
    replayed = names_as_decided(support, "auto", True)
    assert replayed.descriptions == {"INT_0001": "its own description", "card_arrival": "card arrival"}
