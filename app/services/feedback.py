"""FeedbackService: corrections of predictions become examples of a new version, through the /adapt append path.

A correction is a text with its right label (and, optionally, the label it was predicted as). Corrections are
appended with the same compare-and-set as `/adapt` `mode: append` and stored with `source: feedback`:
- a text the tenant already holds with the same label is a duplicate: ignored and counted;
- a text the tenant holds with another label is relabelled: the correction wins, the old example is dropped, so
  the corrected label is what the next version predicts for it;
- a label the tenant does not have yet is added, as an append adds it (the same limits apply);
- corrections apply to single-label tenants (a multi-label tenant appends `labels` through /adapt: 409
  `task_mismatch`).
Within one request the last correction of a text wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.ml.head import SINGLE_LABEL
from app.services.adaptation import AdaptationService, AdaptResult
from app.services.errors import invalid, unknown_tenant
from app.services.records import FEEDBACK
from app.services.validation import check_label, check_text
from app.store.base import JSON


@dataclass(frozen=True)
class Correction:
    text: str
    label: str
    predicted: str | None = None  # what the tenant's model said (kept for the caller's audit; not stored)


@dataclass
class FeedbackResult:
    adapted: AdaptResult
    added: int  # corrections stored as new examples (relabelled texts included)
    ignored_duplicates: int  # corrections the tenant already held with the same label (or repeated in the request)
    relabelled: int  # stored examples whose label a correction replaced


class FeedbackService:
    """Turns corrections into a new version of a single-label tenant."""

    def __init__(self, adaptation: AdaptationService) -> None:
        self.adaptation = adaptation

    def correct(
        self, tenant_id: str, corrections: list[Correction], expected_version: int | None = None
    ) -> FeedbackResult:
        """Validate the corrections, then append them (compare-and-set; 409 `concurrent_update` when
        `expected_version` is given and is not the current version)."""
        self._check(corrections)
        store = self.adaptation.store
        if store.current_version(tenant_id) is None:
            raise unknown_tenant(tenant_id)
        latest = {c.text: c for c in corrections}  # the last correction of a text wins
        examples: list[JSON] = [{"text": c.text, "label": c.label, "source": FEEDBACK} for c in latest.values()]
        counts = {"ignored": len(corrections) - len(latest), "relabelled": 0, "duplicates": 0}

        def revise(stored: list[JSON]) -> list[JSON]:
            """The stored rows minus the examples a correction relabels (run once per compare-and-set try)."""
            if not stored:
                raise unknown_tenant(tenant_id)
            held = {(row["text"], row.get("label")) for row in stored if not row.get("description")}
            relabelled = [
                row
                for row in stored
                if not row.get("description")
                and row["text"] in latest
                and row.get("label") != latest[row["text"]].label
            ]
            counts["duplicates"] = sum((e["text"], e["label"]) in held for e in examples)
            counts["relabelled"] = len(relabelled)
            dropped = {id(row) for row in relabelled}
            return [row for row in stored if id(row) not in dropped]

        adapted = self.adaptation.adapt(
            tenant_id,
            examples,
            mode="append",
            task=SINGLE_LABEL,
            revise=revise,
            expected_version=expected_version,
        )
        ignored = counts["ignored"] + counts["duplicates"]
        return FeedbackResult(adapted, len(corrections) - ignored, ignored, counts["relabelled"])

    def _check(self, corrections: list[Correction]) -> None:
        limits = self.adaptation.context.limits
        if not corrections:
            raise invalid("no_corrections", "corrections must hold at least one correction")
        if len(corrections) > limits.max_texts:
            raise invalid("too_many_corrections", f"{len(corrections)} corrections; the limit is {limits.max_texts}")
        for i, correction in enumerate(corrections):
            check_text(correction.text, limits, f"corrections[{i}].text")
            check_label(correction.label, limits, f"corrections[{i}].label")
