"""Support sets as stored rows: written from a `SupportSet`, read back (and validated again), merged on append."""

from __future__ import annotations

from app.ml.head import SINGLE_LABEL
from app.ml.tenant_fit import SupportSet
from app.services.errors import ServiceError, invalid
from app.services.validation import Limits, encodes_as_utf8, validate_support
from app.store.base import JSON


def support_rows(support: SupportSet) -> list[JSON]:
    """A support set as stored rows (examples, then descriptions flagged `description`); read by `split_stored`.

    Single-label rows are `{text, label}`, multi-label rows `{text, labels}`."""
    if support.label_sets is None:
        rows: list[JSON] = [
            {"text": t, "label": support.labels[y]} for t, y in zip(support.texts, support.targets, strict=True)
        ]
    else:
        rows = [
            {"text": t, "labels": [support.labels[i] for i in row]}
            for t, row in zip(support.texts, support.label_sets, strict=True)
        ]
    rows += [{"text": text, "label": label, "description": True} for label, text in support.descriptions.items()]
    return rows


def split_stored(rows: list[JSON]) -> tuple[list[JSON], dict[str, str]]:
    """Stored support rows -> (examples, label descriptions)."""
    examples = [
        {"text": r["text"], **({"labels": r["labels"]} if "labels" in r else {"label": r["label"]})}
        for r in rows
        if not r.get("description")
    ]
    descriptions = {r["label"]: r["text"] for r in rows if r.get("description")}
    return examples, descriptions


def stored_support_set(rows: list[JSON], limits: Limits, task: str = SINGLE_LABEL) -> SupportSet:
    """A stored support set, validated again (limits may have changed); 409 `model_unusable` when it fails."""
    try:
        examples, descriptions = split_stored(rows)
        return validate_support(examples, None, limits, descriptions, task)
    except (ServiceError, KeyError, TypeError) as exc:
        detail = exc.message if isinstance(exc, ServiceError) else f"malformed row ({exc!r})"
        raise ServiceError(409, "model_unusable", f"stored support set is invalid: {detail}") from exc


def merge_support(
    stored: list[JSON],
    examples: list[JSON],
    descriptions: dict[str, str],
    remove_labels: list[str],
) -> tuple[list[JSON], dict[str, str]]:
    """Stored support + new examples (exact duplicates dropped) + new descriptions, minus removed labels.

    Multi-label examples lose a removed label from their `labels`; one left with none stays as a negative
    example (the text has none of the remaining labels). Single-label examples of a removed label go.
    """
    old_examples, old_descriptions = split_stored(stored)
    for label in remove_labels:
        if not encodes_as_utf8(label):
            raise invalid("invalid_label", "remove_labels holds a label that is not valid Unicode text")
    known = {label for example in old_examples for label in _labels_of(example)} | set(old_descriptions)
    unknown = [label for label in remove_labels if label not in known]
    if unknown:
        raise invalid("unknown_label", f"cannot remove labels the tenant does not have: {unknown[:10]}")
    drop = set(remove_labels)
    merged, seen = [], set()
    for example in [*old_examples, *examples]:
        if example.get("labels") is not None:
            example = {"text": example["text"], "labels": [label for label in example["labels"] if label not in drop]}
            key: tuple = (example["text"], tuple(sorted(example["labels"])))
        elif example.get("label") in drop:
            continue
        else:
            key = (example["text"], example.get("label"))
        if key not in seen:
            seen.add(key)
            merged.append(example)
    merged_descriptions = {k: v for k, v in (old_descriptions | descriptions).items() if k not in drop}
    return merged, merged_descriptions


def _labels_of(example: JSON) -> list[str]:
    labels = example.get("labels")
    return list(labels) if labels is not None else [example["label"]]
