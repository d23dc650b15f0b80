"""Label names as evidence: does a name read as words (`card_arrival` -> "card arrival"), and does it help a tenant?

A name that reads as words joins the support set as one more example of its label, the way a label description
does. `choose_label_names` decides per tenant (mode "auto") by cross-validating the `/adapt` inner loop with and
without the names on the tenant report's folds, every fold fitted at once; names that are codes (`INT_0042`,
`huffpost_3`) are never used in "auto". Pure text and PyTorch: no service imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from app.ml.held_out import can_cross_validate, held_out_folds, held_out_right
from app.ml.learner import InnerLoopParams, adapt_head
from app.ml.multilabel_decision import applies
from app.ml.tenant_fit import SupportSet, held_out_scores
from app.ml.thresholds import ThresholdRule, fit_decision, micro_f1

LabelNamesMode = Literal["auto", "on", "off"]
LABEL_NAME_MODES: tuple[str, ...] = ("auto", "on", "off")

_SEPARATORS = re.compile(r"[\s_\-/.:]+")
_TOKENS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_]+")  # ACRONYM, Word / word, digits, other letters
_VOWEL = re.compile(r"[aeiouy]", re.IGNORECASE)
WORD_SHARE = 2 / 3  # a name reads as words when at least this share of its tokens are words


def name_tokens(name: str) -> list[str]:
    """A label name split on `_`, `-`, `/`, `.`, `:`, spaces, camelCase and digit runs."""
    return [token for part in _SEPARATORS.split(name) for token in _TOKENS.findall(part)]


def is_word(token: str) -> bool:
    """A token that reads as a word: two or more letters, a vowel among them (digits, single letters and
    consonant codes such as `XYZ` are not words). Letters outside ASCII count as words when there are two or more."""
    if len(token) < 2 or not token.isalpha():
        return False
    return not token.isascii() or bool(_VOWEL.search(token))


def readable_name(name: str) -> str | None:
    """The name as words (`card_arrival` -> "card arrival", `getRefund` -> "get refund"), or None when it is mostly
    codes, digits or single letters (`INT_0042`, `huffpost_3`, `q1`)."""
    tokens = name_tokens(name)
    if not tokens:
        return None
    words = sum(is_word(token) for token in tokens)
    if words == 0 or words < WORD_SHARE * len(tokens):
        return None
    shouting = not any(char.islower() for char in name)  # `NO_NODES_DETECTED`: words, not acronyms
    return " ".join(token if token.isupper() and len(token) > 1 and not shouting else token.lower() for token in tokens)


def spelled_name(name: str) -> str:
    """Any name as text (mode "on" uses every name, codes too): its tokens joined, else the name itself."""
    tokens = name_tokens(name)
    return " ".join(tokens) if tokens else name


def name_texts(labels: list[str], descriptions: dict[str, str], mode: LabelNamesMode) -> dict[str, str]:
    """The name text of each label without a description that `mode` would use ("off": none; "on": every one;
    "auto": those whose name reads as words)."""
    if mode == "off":
        return {}
    texts: dict[str, str] = {}
    for label in labels:
        if label in descriptions:
            continue
        text = spelled_name(label) if mode == "on" else readable_name(label)
        if text is not None and text.strip():
            texts[label] = text
    return texts


@dataclass(frozen=True)
class NamesChoice:
    """Whether a tenant's label names join its support set, and why."""

    mode: LabelNamesMode
    used: bool
    reason: str
    n_named: int = 0  # labels whose name joined as an example
    cv_accuracy_with: float | None = None
    cv_accuracy_without: float | None = None


def apply_label_names(
    support: SupportSet,
    mode: LabelNamesMode,
    embed: Callable[[list[str]], torch.Tensor],
    inner: InnerLoopParams,
) -> tuple[SupportSet, NamesChoice]:
    """The support set the head is fitted on (the tenant's, plus each used name as its label's description) and the
    choice. "on" / "off" are the tenant's; "auto" keeps names that read as words when cross-validation on the
    support set does not drop with them: single-label tenants by accuracy (with a label of two examples; without
    one there is nothing to hold out and word names are kept), multi-label tenants by the out-of-fold micro-F1 of
    the served decision."""
    texts = name_texts(support.labels, support.descriptions, mode)
    if mode == "off":
        return support, NamesChoice(mode, False, "label_names is off")
    if not texts:
        described = all(label in support.descriptions for label in support.labels)
        reason = "every label has a description" if described else "no label name reads as words"
        return support, NamesChoice(mode, False, reason)
    if mode == "on":
        return _named(support, texts), NamesChoice(mode, True, "label_names is on", len(texts))
    if support.label_sets is not None:
        with_, without = multilabel_names_f1(support, texts, embed, inner)
        use = with_ >= without
        verdict = "kept: cross-validated micro-F1 does not drop" if use else "dropped: cross-validated micro-F1 drops"
        reason = f"names {verdict} ({100 * with_:.1f} % with, {100 * without:.1f} % without)"
        choice = NamesChoice(mode, use, reason, len(texts) if use else 0, with_, without)
        return (_named(support, texts) if use else support), choice
    if not can_cross_validate(support.targets):
        return _named(support, texts), NamesChoice(
            mode, True, "names read as words; too few examples to cross-validate", len(texts)
        )
    index = {label: i for i, label in enumerate(support.labels)}
    described = [label for label in support.labels if label in support.descriptions]
    named = list(texts)
    rows = embed([*support.texts, *(support.descriptions[label] for label in described), *texts.values()])
    n, d = len(support.texts), len(described)
    extra = (rows[n : n + d], [index[label] for label in described])
    names = (rows[n + d :], [index[label] for label in named])
    use, with_, without = choose_label_names(rows[:n], support.targets, support.labels, extra, names, inner)
    verdict = "kept: cross-validated accuracy does not drop" if use else "dropped: cross-validated accuracy drops"
    reason = f"names {verdict} ({100 * with_:.1f} % with, {100 * without:.1f} % without)"
    choice = NamesChoice(mode, use, reason, len(texts) if use else 0, with_, without)
    return (_named(support, texts) if use else support), choice


def multilabel_names_f1(
    support: SupportSet,
    texts: dict[str, str],
    embed: Callable[[list[str]], torch.Tensor],
    inner: InnerLoopParams,
    rule: ThresholdRule | None = None,
) -> tuple[float, float]:
    """Out-of-fold micro-F1 on a multi-label tenant's examples of the served decision (thresholds and the top-label
    rule fitted on the same out-of-fold scores, as `fit_multilabel` fits them; descriptions and names train in every
    fold), with and without the label names `texts` as descriptions. Returns (micro-F1 with, micro-F1 without)."""
    rule = rule or ThresholdRule()
    n = len(support.texts)
    scores = []
    for fitted in (_named(support, texts), support):
        fit_texts, targets = fitted.fit_tensors()
        held_out = held_out_scores(embed(fit_texts), targets, n, inner, rule)
        decision = fit_decision(held_out.scores, targets[:n], held_out.valid, rule)
        predicted = applies(held_out.scores, decision.thresholds, decision.min_labels)
        scores.append(micro_f1(predicted, targets[:n], held_out.valid))
    return scores[0], scores[1]


def names_as_decided(support: SupportSet, mode: LabelNamesMode, used: bool) -> SupportSet:
    """The fitted support set of a stored decision (a rebuild does not decide again)."""
    if not used:
        return support
    texts = name_texts(support.labels, support.descriptions, mode)
    return _named(support, texts) if texts else support


def _named(support: SupportSet, texts: dict[str, str]) -> SupportSet:
    return SupportSet(support.texts, support.labels, support.targets, support.descriptions | texts, support.label_sets)


def choose_label_names(
    embeddings: torch.Tensor,
    targets: list[int],
    labels: list[str],
    extra: tuple[torch.Tensor, list[int]],
    names: tuple[torch.Tensor, list[int]],
    inner: InnerLoopParams,
    seed: int = 0,
) -> tuple[bool, float, float]:
    """Cross-validated accuracy of the `/adapt` inner loop without and with the label names; names are kept when
    they do not lower it (a tie keeps them: names are free evidence).

    `embeddings` / `targets`: the examples; `extra`: the description rows (always train); `names`: the name rows
    (train too, in the "with" fits). The folds are `held_out.held_out_folds`; every fold of both variants is
    fitted at once. Returns (use, accuracy with, accuracy without).
    """
    rows = torch.cat([embeddings, extra[0], names[0]])
    row_targets = torch.tensor([*targets, *extra[1], *names[1]], dtype=torch.long)
    folds = held_out_folds(row_targets, len(targets), len(labels), seed)
    is_name = torch.arange(rows.shape[0]) >= len(targets) + len(extra[1])
    subsets = torch.cat([folds.without(is_name), folds.train])
    heads = adapt_head(rows, row_targets, len(labels), inner, differentiable=False, subsets=subsets)
    right = held_out_right(rows, row_targets, heads, torch.cat([folds.held, folds.held]))
    k, scored = folds.held.shape[0], max(1, int(folds.held.sum()))
    without, with_ = float(right[:k].sum()) / scored, float(right[k:].sum()) / scored
    return with_ >= without, with_, without
