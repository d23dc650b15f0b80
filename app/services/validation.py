"""Request validation: limits, text and label checks, and a support set checked into a `SupportSet`.

Every refusal is a 422 `ServiceError` with a precise code; counts are checked before any item is."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sized
from functools import cache
from itertools import compress

from app.ml.head import MULTI_LABEL, SINGLE_LABEL
from app.ml.policy import Limits
from app.ml.tenant_fit import SupportSet
from app.services.errors import ServiceError, invalid
from app.store.base import JSON

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # fillers and blanks drawn as nothing


def is_invisible(char: str) -> bool:
    """The definition, one character at a time: whitespace, a control, format or separator character (ZWSP, BOM,
    direction overrides), or a Hangul filler or blank."""
    return char.isspace() or char in _INVISIBLE_LETTERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES


@cache
def visible_character() -> re.Pattern[str]:
    """A pattern matching any visible character (one that is not `is_invisible`), built once from a scan of every
    code point."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    invisible = [ord(char) for char in compress(every, map(is_invisible, every))]
    ranges: list[list[int]] = []
    for point in invisible:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    members = "".join(f"\\U{low:08x}" + (f"-\\U{high:08x}" if high > low else "") for low, high in ranges)
    return re.compile(f"[^{members}]")


def is_blank(text: str) -> bool:
    """True when nothing in `text` is visible (every character `is_invisible`), in one regex search."""
    return visible_character().search(text) is None


def encodes_as_utf8(text: str) -> bool:
    """False for text holding lone surrogates (valid JSON `\\ud800`, but no UTF-8 text and no token)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, limits: Limits, where: str) -> None:
    """Reject text that is not UTF-8, blank (nothing visible) or over-long."""
    if not encodes_as_utf8(text):
        raise invalid("invalid_text", f"{where} is not valid Unicode text (it holds a lone surrogate)")
    if is_blank(text):
        raise invalid("empty_text", f"{where} is empty or has no visible character")
    if len(text) > limits.max_text_chars:
        raise invalid("text_too_long", f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")


def check_label(label: str, limits: Limits, where: str) -> None:
    """Reject labels that are not UTF-8, blank (nothing visible) or over-long."""
    if not encodes_as_utf8(label):
        raise invalid("invalid_label", f"{where} is not valid Unicode text (it holds a lone surrogate)")
    if is_blank(label):
        raise invalid("empty_label", f"{where} is empty or has no visible character")
    if len(label) > limits.max_label_chars:
        raise invalid("label_too_long", f"{where} is longer than {limits.max_label_chars} characters")


def example_labels(example: JSON, task: str, where: str) -> list[str]:
    """The labels of one example: `label` (single-label tenants) or `labels` (multi-label), never the other."""
    label, labels = example.get("label"), example.get("labels")
    if task == MULTI_LABEL:
        if label is not None:
            raise invalid("single_label_example", f"{where} has `label`; a multi-label tenant's examples use `labels`")
        if labels is None:
            raise invalid("missing_label", f"{where} has no `labels` (use [] for a text to which no label applies)")
        if len(set(labels)) != len(labels):
            raise invalid("duplicate_label", f"{where}.labels names a label twice")
        return list(labels)
    if labels is not None:
        raise invalid(
            "multi_label_example", f"{where} has `labels`; this is a single-label task (`label`, or task multi_label)"
        )
    if label is None:
        raise invalid("missing_label", f"{where} has no `label`")
    return [label]


def too_many_labels(what: str, limits: Limits) -> ServiceError:
    return invalid("too_many_labels", f"{what}; the limit is {limits.max_labels}")


def check_label_counts(limits: Limits, **label_lists: Sized | None) -> None:
    """422 `too_many_labels` when a request's list of labels (e.g. `labels`, `label_descriptions`) is over
    `max_labels`: checked before any of its labels is."""
    for name, labels in label_lists.items():
        if labels is not None and len(labels) > limits.max_labels:
            raise too_many_labels(f"`{name}` has {len(labels)} entries", limits)


def validate_support(
    examples: list[JSON],
    declared_labels: list[str] | None,
    limits: Limits,
    descriptions: dict[str, str] | None = None,
    task: str = SINGLE_LABEL,
) -> SupportSet:
    """Check a support set against the limits; raise `ServiceError` with a precise code.

    Counts come before any per-item check, and the work is linear in the set's size: each distinct label is
    checked once, at its first use, and the set is refused as soon as its examples use too many labels."""
    descriptions = dict(descriptions or {})
    if len(examples) > limits.max_examples:
        raise invalid("too_many_examples", f"{len(examples)} examples; the limit is {limits.max_examples}")
    check_label_counts(limits, labels=declared_labels, label_descriptions=descriptions)
    label_lists = []
    used: dict[str, None] = {}  # distinct labels of the examples, in order of first use
    for i, example in enumerate(examples):
        check_text(example["text"], limits, f"examples[{i}].text")
        labels_here = example_labels(example, task, f"examples[{i}]")
        for j, label in enumerate(labels_here):
            if label not in used:
                used[label] = None
                if len(used) > limits.max_labels:
                    raise too_many_labels(f"the examples use more than {limits.max_labels} distinct labels", limits)
                check_label(label, limits, f"examples[{i}].label" + (f"s[{j}]" if task == MULTI_LABEL else ""))
        label_lists.append(labels_here)
    for label, text in descriptions.items():
        check_label(label, limits, f"label_descriptions key {label!r}")
        check_text(text, limits, f"label_descriptions[{label!r}]")
    seen = list(dict.fromkeys([*used, *descriptions]))
    if declared_labels is not None:
        for i, label in enumerate(declared_labels):
            check_label(label, limits, f"labels[{i}]")
        declared = set(declared_labels)
        if len(declared) != len(declared_labels):
            raise invalid("duplicate_label", "labels contains duplicates")
        seen_set = set(seen)
        missing = [label for label in declared_labels if label not in seen_set]
        if missing:
            raise invalid("label_without_examples", f"labels without any example: {missing[:10]}")
        undeclared = [label for label in seen if label not in declared]
        if undeclared:
            raise invalid("undeclared_label", f"examples use labels not in `labels`: {undeclared[:10]}")
        seen = list(declared_labels)
    least = 1 if task == MULTI_LABEL else 2  # one multi-label label is a yes/no classifier (with negatives)
    if len(seen) < least:
        raise invalid("too_few_labels", f"{len(seen)} distinct label(s); a {task} classifier needs at least {least}")
    if len(seen) > limits.max_labels:
        raise too_many_labels(f"{len(seen)} distinct labels", limits)
    index = {label: i for i, label in enumerate(seen)}
    texts = [example["text"] for example in examples]
    if task == MULTI_LABEL:
        if len(seen) == 1 and not any(not labels for labels in label_lists):
            raise invalid("too_few_labels", "one label and no negative example (`labels: []`): nothing to tell apart")
        label_sets = [tuple(index[label] for label in labels) for labels in label_lists]
        return SupportSet(texts, seen, [], descriptions, label_sets=label_sets)
    return SupportSet(texts, seen, [index[labels[0]] for labels in label_lists], descriptions)
