"""One way to report a benchmark: a markdown table on stdout and the full result as JSON (bench/results/)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: the header, its rule and one line per row (cells already formatted or str()-ed)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print `markdown_table(header, rows)`."""
    print(markdown_table(header, rows))


def write_json(path: Path, report: Mapping[str, Any], indent: int = 2) -> None:
    """Write `report` as indented JSON (creating the folder), newline-terminated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=indent) + "\n")
