"""TierChooser: `encoder: "auto"` — which served tier a tenant's support set should be adapted with.

Each served tier embeds the support set through its own per-tenant embedding cache (so the chosen tier's `/adapt`
fit reuses its embeddings) and cross-validates it with the tenant report's folds and the tier's own inner loop;
`app.ml.tier_choice.choose_tier` weighs language, cost and those accuracies. Multi-label support sets are chosen by
language and cost alone (their report has no per-row correctness to compare).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from app.ml.head import MULTI_LABEL
from app.ml.registry import AUTO, spec
from app.ml.tenant_fit import SupportSet
from app.ml.tenant_report import cross_validate
from app.ml.tier_choice import LanguageGuess, TierChoice, TierTrial, choose_tier, guess_language
from app.ml.work import stop_if_cancelled
from app.services.context import TierContext

DEFAULT_COST = 1.0


@dataclass(frozen=True)
class Candidate:
    """One served tier as the chooser sees it."""

    name: str
    context: TierContext
    cost: float
    languages: frozenset[str] | None


def candidate(name: str, context: TierContext) -> Candidate:
    """A served tier's candidate, with the cost and languages its registry spec declares (unknown: English-only,
    cost 1)."""
    try:
        tier_spec = spec(name)
    except KeyError:
        return Candidate(name, context, DEFAULT_COST, frozenset({"en"}))
    return Candidate(name, context, tier_spec.cost, tier_spec.languages)


class TierChooser:
    """Chooses among the served tiers for one support set."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        if not candidates:
            raise ValueError("at least one tier")
        self.candidates = list(candidates)

    def choose(self, support_of: dict[str, SupportSet], tenant_id: str, generation: str) -> TierChoice:
        """The tier for a support set, validated per tier in `support_of` (tier name -> its support set)."""
        texts = next(iter(support_of.values())).texts
        language = guess_language(texts)
        trials = [self._trial(c, support_of[c.name], tenant_id, generation, language) for c in self.candidates]
        return choose_tier(trials, language)

    def _trial(
        self, tier: Candidate, support: SupportSet, tenant_id: str, generation: str, language: LanguageGuess
    ) -> TierTrial:
        if len(self.candidates) == 1 or support.task == MULTI_LABEL:
            return TierTrial(tier.name, tier.cost, tier.languages, torch.zeros(0, dtype=torch.bool))
        stop_if_cancelled()
        context = tier.context
        texts, targets = support.fit_inputs()
        embeddings, _ = context.embeddings.embed(texts, context.embedder.embed, tenant_id, generation)
        n = len(support.texts)
        extra = (embeddings[n:], targets[n:])
        with context.math():
            scored = cross_validate(
                embeddings[:n],
                support.targets,
                support.labels,
                support.texts,
                context.inner,
                oos_rule=None,
                extra=extra,
                learning_curve=False,
            )
        correct = scored.probabilities.argmax(-1) == scored.targets
        return TierTrial(tier.name, tier.cost, tier.languages, correct)


def choice_json(choice: TierChoice) -> dict[str, object]:
    """The choice as stored in the tenant record and returned by `/adapt` (JSON)."""
    return {
        "requested": AUTO,
        "chosen": choice.chosen,
        "preferred": choice.preferred,
        "language": choice.language.language,
        "english_share": round(choice.language.english_share, 4),
        "accuracies": {name: round(acc, 4) for name, acc in choice.accuracies.items()},
        "reason": choice.reason,
    }
