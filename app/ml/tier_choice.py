"""Which encoder tier suits a tenant: the language of its support set first, then cross-validated accuracy.

A tier declares the languages it was trained for (`None`: about a hundred) and a relative cost per text. The
*preferred* tier is the cheapest one whose languages cover the support set's. Another eligible tier replaces it
only when it wins clearly on the tenant's own cross-validation (the tenant report's folds, the same held-out rows
for every tier): at least `margin` more accuracy, and more held-out rows it alone gets right than rows only the
preferred one gets right by a one-sided sign test,

    z = (wins - losses) / sqrt(wins + losses) >= z_clear,

so a tier never costs more per text for a difference the support set cannot show. Pure Python and PyTorch.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import torch

ENGLISH = "en"
OTHER = "other"  # any language but English, or a mixture
ENGLISH_SHARE = 0.6  # texts that must read as English for a support set to be English
LATIN_SHARE = 0.7  # letters that must be Latin for a text to be read as English at all
MARGIN = 0.02
Z_CLEAR = 1.645  # one-sided 95 %

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ENGLISH_WORDS = frozenset(
    re.findall(
        r"\S+",
        """a about after all am an and any are as at be been before but by can could did do does for from get got had
    has have he her him his how i if in into is it its just me my no not now of off on one or our out please
    she should so some than that the their them then there they this to too up us was we were what when where which
    who why will with would you your""",
    )
)


@dataclass(frozen=True)
class LanguageGuess:
    """The support set's language as far as tier choice needs it: English, or anything else."""

    language: str  # ENGLISH or OTHER
    english_share: float  # texts read as English
    latin_share: float  # letters in the Latin script


@dataclass(frozen=True)
class TierTrial:
    """One candidate tier: its cost, its languages and its held-out correctness on the tenant's folds."""

    name: str
    cost: float  # per text, relative to the other tiers
    languages: frozenset[str] | None  # None: multilingual
    correct: torch.Tensor  # [n] bool, one entry per held-out row, the same rows for every trial


@dataclass(frozen=True)
class TierChoice:
    """The tier chosen for a tenant and why."""

    chosen: str
    preferred: str  # the cheapest tier covering the language
    language: LanguageGuess
    accuracies: dict[str, float]  # cross-validated accuracy per tier
    reason: str


def guess_language(texts: Sequence[str]) -> LanguageGuess:
    """English if most texts are written in Latin letters without accents and use an English function word."""
    letters = latin = 0
    english = 0
    for text in texts:
        text_letters = text_latin = 0
        accented = False
        for char in text:
            if char.isalpha():
                text_letters += 1
                name = unicodedata.name(char, "")
                if name.startswith("LATIN"):
                    text_latin += 1
                    accented = accented or not char.isascii()
        letters += text_letters
        latin += text_latin
        words = {word.lower() for word in _WORD.findall(text)}
        if text_letters and text_latin >= LATIN_SHARE * text_letters and not accented and words & _ENGLISH_WORDS:
            english += 1
    english_share = english / len(texts) if texts else 0.0
    latin_share = latin / letters if letters else 1.0
    language = ENGLISH if english_share >= ENGLISH_SHARE else OTHER
    return LanguageGuess(language, english_share, latin_share)


def covers(trial: TierTrial, language: str) -> bool:
    return trial.languages is None or language in trial.languages


def choose_tier(
    trials: Sequence[TierTrial], language: LanguageGuess, margin: float = MARGIN, z_clear: float = Z_CLEAR
) -> TierChoice:
    """The preferred tier (cheapest covering the language), unless an eligible one wins clearly (module doc)."""
    if not trials:
        raise ValueError("no tier to choose from")
    eligible = [t for t in trials if covers(t, language.language)] or list(trials)
    preferred = min(eligible, key=lambda t: t.cost)
    accuracies = {t.name: _accuracy(t.correct) for t in trials}
    best, best_z = preferred, 0.0
    for trial in eligible:
        if trial is preferred:
            continue
        gain = accuracies[trial.name] - accuracies[preferred.name]
        z = _sign_z(trial.correct, preferred.correct)
        if gain >= margin and z >= z_clear and accuracies[trial.name] > accuracies[best.name]:
            best, best_z = trial, z
    reason = _reason(best, preferred, language, accuracies, best_z, len(eligible) < len(trials))
    return TierChoice(best.name, preferred.name, language, accuracies, reason)


def _accuracy(correct: torch.Tensor) -> float:
    return float(correct.float().mean()) if correct.numel() else 0.0


def _sign_z(challenger: torch.Tensor, incumbent: torch.Tensor) -> float:
    """One-sided sign-test statistic of the challenger's wins over the incumbent's on the same rows."""
    wins = int((challenger & ~incumbent).sum())
    losses = int((incumbent & ~challenger).sum())
    if wins + losses == 0:
        return 0.0
    return (wins - losses) / math.sqrt(wins + losses)


def _reason(
    chosen: TierTrial,
    preferred: TierTrial,
    language: LanguageGuess,
    accuracies: dict[str, float],
    z: float,
    filtered: bool,
) -> str:
    lang = "English" if language.language == ENGLISH else "not English"
    scope = f"support set reads as {lang} ({language.english_share:.0%} of texts English-like)"
    if filtered:
        scope += "; tiers without that language were left out"
    if chosen is preferred:
        measured = ", ".join(f"{name} {acc:.1%}" for name, acc in accuracies.items())
        return f"{scope}; {chosen.name} is the cheapest tier for it and no other won clearly ({measured})"
    return (
        f"{scope}; {chosen.name} won clearly over the cheaper {preferred.name} in cross-validation "
        f"({accuracies[chosen.name]:.1%} vs {accuracies[preferred.name]:.1%}, sign test z = {z:.2f})"
    )
