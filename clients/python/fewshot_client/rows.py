"""Input rows of a batch job (CSV or JSONL, each with a `text`) and the finished rows of its output file."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEXT_FIELD = "text"
ID_FIELD = "id"


@dataclass(frozen=True)
class Row:
    """Input row number `index` (0-based, in file order): its text (None when missing or not a string), its `id`
    and the other columns."""

    index: int
    text: str | None
    id: Any
    extra: dict[str, Any]
    problem: str | None = None  # why the row cannot be sent (the row could not be read)


def _row(index: int, record: Any, keep_columns: bool) -> Row:
    if not isinstance(record, dict):
        return Row(index, None, None, {}, "the row is not an object")
    text = record.get(TEXT_FIELD)
    extra = {k: v for k, v in record.items() if k not in (TEXT_FIELD, ID_FIELD)} if keep_columns else {}
    problem = None if isinstance(text, str) else f"no string `{TEXT_FIELD}` field"
    return Row(index, text if isinstance(text, str) else None, record.get(ID_FIELD), extra, problem)


def is_csv(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def read_rows(path: Path, keep_columns: bool = True) -> Iterator[Row]:
    """Every row of a CSV (header with a `text` column) or JSONL file (one object with `text` per line; blank lines
    are not rows)."""
    with path.open(encoding="utf-8", newline="") as handle:
        if is_csv(path):
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            for index, record in enumerate(csv.DictReader(handle, delimiter=delimiter)):
                yield _row(index, record, keep_columns)
            return
        index = 0
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield Row(index, None, None, {}, "the line is not valid JSON")
            else:
                yield _row(index, record, keep_columns)
            index += 1


def count_rows(path: Path) -> int:
    """How many rows `read_rows` yields (a quick pass, for the progress bar)."""
    with path.open(encoding="utf-8", newline="") as handle:
        if is_csv(path):
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            return max(0, sum(1 for _ in csv.reader(handle, delimiter=delimiter)) - 1)
        return sum(1 for line in handle if line.strip())


def finished_rows(out: Path) -> set[int]:
    """Row numbers already written to the output (a JSONL file of result rows). A last line cut short by an
    interruption is removed from the file, so its rows are classified again and written once."""
    if not out.exists():
        return set()
    done: set[int] = set()
    good_end = 0
    with out.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                break
            if isinstance(record, dict) and isinstance(record.get("row"), int):
                done.add(record["row"])
            good_end += len(line)
    if good_end != out.stat().st_size:
        with out.open("rb+") as handle:
            handle.truncate(good_end)
            os.fsync(handle.fileno())
    return done
