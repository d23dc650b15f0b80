"""The tier-choice rule: language first, then the cheaper tier unless another wins clearly."""

from __future__ import annotations

import pytest
import torch

from app.ml.tier_choice import ENGLISH, OTHER, LanguageGuess, TierTrial, choose_tier, guess_language

EN = frozenset({"en"})
ENGLISH_GUESS = LanguageGuess(ENGLISH, 1.0, 1.0)
OTHER_GUESS = LanguageGuess(OTHER, 0.0, 0.2)


def correct(n_right: int, n: int = 100, offset: int = 0) -> torch.Tensor:
    rows = torch.zeros(n, dtype=torch.bool)
    rows[offset : offset + n_right] = True
    return rows


@pytest.mark.parametrize(
    ("texts", "language"),
    [
        (["what is the weather like today", "set an alarm for 7 am", "remind me to call mum"], ENGLISH),
        (["wie wird das Wetter morgen", "stelle einen Wecker für 7 Uhr", "erinnere mich an den Termin"], OTHER),
        (["明天天气怎么样", "设置早上七点的闹钟", "提醒我给妈妈打电话"], OTHER),
        (["هل أحتاج إلى سترة ؟", "إلغي تذكيري", "أضف تذكيرًا اليوم"], OTHER),
        (["imposta una sveglia alle 7", "che tempo farà domani", "ricordami di chiamare"], OTHER),
        (["yarın hava nasıl olacak", "saat yedide alarm kur", "annemi aramamı hatırlat"], OTHER),  # noqa: RUF001
    ],
)
def test_language_guess(texts: list[str], language: str) -> None:
    assert guess_language(texts).language == language


def test_accents_alone_make_a_text_not_english() -> None:
    assert guess_language(["café for the team"]).english_share == 0.0
    assert guess_language(["coffee for the team"]).english_share == 1.0


def test_english_support_keeps_the_cheaper_tier_on_a_tie() -> None:
    trials = [
        TierTrial("big", 4.0, EN, correct(80)),
        TierTrial("small", 1.0, EN, correct(80)),
        TierTrial("multi", 2.0, None, correct(81)),
    ]
    choice = choose_tier(trials, ENGLISH_GUESS)
    assert choice.chosen == "small"
    assert choice.preferred == "small"
    assert "no other won clearly" in choice.reason


def test_a_clear_winner_replaces_the_cheaper_tier() -> None:
    trials = [TierTrial("small", 1.0, EN, correct(70)), TierTrial("big", 4.0, EN, correct(85))]
    choice = choose_tier(trials, ENGLISH_GUESS)
    assert choice.chosen == "big"
    assert choice.accuracies == pytest.approx({"small": 0.70, "big": 0.85})
    assert "won clearly" in choice.reason


def test_a_gain_the_rows_cannot_show_keeps_the_cheaper_tier() -> None:
    """Three points more, but the tiers disagree on many rows both ways: the sign test is not clear."""
    small = correct(70, offset=0)
    big = correct(73, offset=20)  # wins 23 rows, loses 20
    choice = choose_tier([TierTrial("small", 1.0, EN, small), TierTrial("big", 4.0, EN, big)], ENGLISH_GUESS)
    assert choice.chosen == "small"


def test_non_english_support_prefers_a_tier_for_its_language_even_when_dearer() -> None:
    trials = [TierTrial("small", 1.0, EN, correct(90)), TierTrial("multi", 2.0, None, correct(60))]
    choice = choose_tier(trials, OTHER_GUESS)
    assert choice.chosen == "multi"
    assert "left out" in choice.reason


def test_without_a_tier_for_the_language_all_tiers_compete() -> None:
    trials = [TierTrial("small", 1.0, EN, correct(60)), TierTrial("big", 4.0, EN, correct(90))]
    assert choose_tier(trials, OTHER_GUESS).chosen == "big"


def test_no_trials_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_tier([], ENGLISH_GUESS)
