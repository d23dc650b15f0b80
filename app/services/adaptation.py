"""AdaptationService: support set -> embeddings -> inner loop -> stored, versioned head.

A tenant is single-label (each example has one `label`) or multi-label (each example has `labels`, possibly
empty: a negative example). Its task is set by a `replace` and kept by `append`; changing it is a replace.
"""

from __future__ import annotations

import re
import sys
import time
import unicodedata
from collections.abc import Sized
from dataclasses import dataclass, field
from functools import cache
from itertools import compress
from typing import Literal

from app.ml.embedder import Embedder
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.head import MULTI_LABEL, SINGLE_LABEL, TenantHead
from app.ml.learner import InnerLoopParams
from app.ml.tenant_fit import OosRule, SupportSet, fit_tenant
from app.services.errors import ServiceError, encoder_not_served, invalid
from app.services.records import DEFAULT_ENCODER, build_meta, new_generation, stored_encoder, stored_generation
from app.store.base import JSON, NO_MODEL, TenantStore

Mode = Literal["replace", "append"]
APPEND_RETRIES = 5


@dataclass(frozen=True)
class Limits:
    """Request limits (from settings)."""

    max_examples: int = 5000
    max_labels: int = 500
    max_texts: int = 256
    max_text_chars: int = 2000
    max_label_chars: int = 100
    max_top_k: int = 20


@dataclass
class AdaptResult:
    tenant_id: str
    version: int
    labels: list[str]
    counts: dict[str, int]
    n_descriptions: int
    inner_steps: int
    oos_threshold: float | None
    n_embedded: int
    encoder_fingerprint: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    task: str = SINGLE_LABEL
    n_negatives: int = 0  # multi-label examples to which no label applies
    thresholds: dict[str, float] | None = None  # multi-label: each label's decision threshold
    encoder: str = DEFAULT_ENCODER  # the encoder tier the head was adapted with


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


def stored_task(meta: JSON) -> str:
    """The task a stored version was adapted for (records from before multi-label are single-label)."""
    task = meta.get("task", SINGLE_LABEL)
    return task if task in (SINGLE_LABEL, MULTI_LABEL) else SINGLE_LABEL


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


class AdaptationService:
    """Turns a tenant's support set into a stored head."""

    def __init__(
        self,
        embedder: Embedder,
        inner: InnerLoopParams,
        store: TenantStore,
        limits: Limits,
        oos_rule: OosRule | None = None,
        embedding_cache: EmbeddingLRU | None = None,
        math_threads: int | None = None,
        multi_inner: InnerLoopParams | None = None,
        encoder_name: str = DEFAULT_ENCODER,
    ) -> None:
        self.embedder = embedder
        self.encoder_name = encoder_name  # the tier this service adapts with (stored in each record)
        self.inner = inner
        self.multi_inner = multi_inner or inner  # the inner loop of multi-label tenants (one-vs-rest head)
        self.math_threads = math_threads  # intra-op threads for the inner loop (None: the thread's own)
        self.store = store
        self.limits = limits
        self.oos_rule = oos_rule or OosRule()
        self.embeddings = embedding_cache if embedding_cache is not None else EmbeddingLRU(0)
        visible_character()  # the blank check's pattern: built here, at startup, rather than by a request

    def require_own_encoder(self, tenant_id: str, meta: JSON) -> None:
        """409 `encoder_not_served` unless the record `meta` describes was adapted with this service's encoder."""
        if stored_encoder(meta) != self.encoder_name:
            raise encoder_not_served(tenant_id, stored_encoder(meta))

    def inner_for(self, task: str) -> InnerLoopParams:
        return self.multi_inner if task == MULTI_LABEL else self.inner

    def fit(
        self, support: SupportSet, inner_steps: int | None, scope: str = "", generation: str = ""
    ) -> tuple[TenantHead, dict[str, float], int]:
        """Embed the support set (texts cached under `scope` and `generation` reused) and run the inner loop; no
        store access.

        `inner_steps` None: the task's default. Returns the head, timings and how many texts went through the encoder.
        """
        inner = self.inner_for(support.task)
        fitted = fit_tenant(
            support,
            self.embedder,
            inner if inner_steps is None else inner.with_steps(inner_steps),
            self.oos_rule,
            cache=self.embeddings,
            scope=scope,
            generation=generation,
            math_threads=self.math_threads,
        )
        return fitted.head, fitted.timings_ms, fitted.n_embedded

    def adapt(
        self,
        tenant_id: str,
        examples: list[JSON],
        labels: list[str] | None = None,
        inner_steps: int | None = None,
        mode: Mode = "replace",
        remove_labels: list[str] | None = None,
        label_descriptions: dict[str, str] | None = None,
        task: str | None = None,
    ) -> AdaptResult:
        """Validate, fit and store a new version; nothing is written when validation fails.

        `replace` makes the request's examples the whole support set (task: `task`, default single-label);
        `append` adds them (and new labels) to the stored one and drops `remove_labels`, with compare-and-set
        against concurrent writers; it keeps the tenant's task (an explicit other `task` is a 409
        `task_mismatch`: changing a task is a replace).
        """
        started = time.perf_counter()
        descriptions = label_descriptions or {}
        if mode == "replace":
            if remove_labels:
                raise invalid("invalid_option", "remove_labels needs mode 'append'")
            task = task or SINGLE_LABEL
            steps = self.inner_for(task).steps if inner_steps is None else inner_steps
            support = validate_support(examples, labels, self.limits, descriptions, task)
            current_model = self.store.load(tenant_id)
            generation = stored_generation(current_model.meta) if current_model is not None else ""
            generation = generation or new_generation()
            head, timings, n_embedded = self.fit(support, steps, tenant_id, generation)
            version = self._save(tenant_id, head, support, steps, generation, expected_version=None)
        else:
            check_label_counts(self.limits, remove_labels=remove_labels)
            for _ in range(APPEND_RETRIES):
                current_model = self.store.load(tenant_id)
                current = None if current_model is None else current_model.version
                stored = self.store.load_support(tenant_id) if current is not None else []
                if current_model is not None:
                    self.require_own_encoder(tenant_id, current_model.meta)
                tenant_task = (task or SINGLE_LABEL) if current_model is None else stored_task(current_model.meta)
                if task is not None and task != tenant_task:
                    raise ServiceError(
                        409,
                        "task_mismatch",
                        f"tenant {tenant_id!r} is {tenant_task}; changing its task needs mode 'replace'",
                    )
                merged, merged_descriptions = merge_support(stored or [], examples, descriptions, remove_labels or [])
                support = validate_support(merged, labels, self.limits, merged_descriptions, tenant_task)
                steps = self.inner_for(tenant_task).steps if inner_steps is None else inner_steps
                generation = stored_generation(current_model.meta) if current_model is not None else ""
                generation = generation or new_generation()
                head, timings, n_embedded = self.fit(support, steps, tenant_id, generation)
                expected = NO_MODEL if current is None else current  # creating is a compare-and-set too
                version = self._save(tenant_id, head, support, steps, generation, expected_version=expected)
                if version is not None:
                    break
            else:
                raise ServiceError(409, "concurrent_update", "the tenant changed during append; retry")
        assert version is not None
        timings["store"] = round(_ms(time.perf_counter() - started) - sum(timings.values()), 3)
        timings["total"] = _ms(time.perf_counter() - started)
        return AdaptResult(
            tenant_id=tenant_id,
            version=version,
            labels=support.labels,
            counts=support.counts(),
            n_descriptions=len(support.descriptions),
            inner_steps=steps,
            oos_threshold=head.oos_threshold,
            n_embedded=n_embedded,
            encoder_fingerprint=self.embedder.fingerprint,
            timings_ms=timings,
            task=support.task,
            n_negatives=support.n_negatives,
            thresholds=_threshold_map(head),
            encoder=self.encoder_name,
        )

    def rebuild(self, tenant_id: str, version: int, inner_steps: int | None) -> tuple[int, TenantHead] | None:
        """Re-adapt from the stored support set (stale or corrupt head); None if it changed meanwhile."""
        stored_support = self.store.load_support(tenant_id)
        stored = self.store.load(tenant_id, version=version)
        if stored_support is None or stored is None:
            return None
        self.require_own_encoder(tenant_id, stored.meta)
        support = stored_support_set(stored_support, self.limits, stored_task(stored.meta))
        steps = self.inner_for(support.task).steps if inner_steps is None else inner_steps
        generation = stored_generation(stored.meta)
        head, _, _ = self.fit(support, steps, tenant_id, generation)
        new_version = self._save(tenant_id, head, support, steps, generation, expected_version=version)
        return None if new_version is None else (new_version, head)

    def _save(
        self,
        tenant_id: str,
        head: TenantHead,
        support: SupportSet,
        steps: int,
        generation: str,
        expected_version: int | None,
    ) -> int | None:
        head_bytes = head.to_bytes()
        meta = build_meta(
            head_bytes, support.labels, support.counts(), self.embedder.fingerprint, steps, self.encoder_name
        )
        meta["n_descriptions"] = len(support.descriptions)
        meta["oos_threshold"] = head.oos_threshold
        meta["task"] = support.task
        meta["generation"] = generation
        if support.task == MULTI_LABEL:
            meta["n_negatives"] = support.n_negatives
            meta["thresholds"] = [round(t, 6) for t in head.thresholds.tolist()]  # type: ignore[union-attr]
        return self.store.save(tenant_id, head_bytes, meta, support_rows(support), expected_version)


def _threshold_map(head: TenantHead) -> dict[str, float] | None:
    if head.thresholds is None:
        return None
    return {label: round(t, 6) for label, t in zip(head.labels, head.thresholds.tolist(), strict=True)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
