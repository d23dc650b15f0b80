"""The README is a front page (short, the two commands first), no documentation link is broken, and no document
points at a folder outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = sorted([README, *(ROOT / "docs").glob("*.md"), *(ROOT / "models").glob("*/MODEL_CARD.md")])

MAX_README_LINES = 200
FRONT_LINES = 20
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)
# a path above the checkout (`../x`, as commands run from the root) or under this machine's work root
_OUTSIDE = re.compile(r"(?<![\w./-])(?:\.\./|/work/)[^\s`'\");,]*")


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(heading) for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))}


def _relative_links(path: Path) -> list[str]:
    links = _LINK.findall(_prose(path.read_text(encoding="utf-8")))
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]  # http:, https:, mailto:


def test_readme_is_a_short_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the front page keeps to 200"
    front = [line.strip() for line in lines[:FRONT_LINES]]
    for command in ("make run", "make test"):
        assert any(line.startswith(command) for line in front), f"`{command}` is not in README.md's first lines"


def test_documents_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/api.md", "docs/configuration.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_in_the_repository(document: Path) -> None:
    broken = []
    for link in _relative_links(document):
        target, _, fragment = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.is_relative_to(ROOT):
            broken.append(f"{link} (outside the repository)")
        elif not path.exists():
            broken.append(f"{link} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
            broken.append(f"{link} (no such heading)")
    assert not broken, f"{document.relative_to(ROOT)}: broken links: {broken}"


def test_link_checker_sees_links_and_skips_code() -> None:
    sample = "see [a](docs/a.md#x) and ![b](img.png) `[c](not-a-link.md)` [d](https://example.org)\n```\n[e](f.md)\n```"
    assert _LINK.findall(_prose(sample)) == ["docs/a.md#x", "img.png", "https://example.org"]
    assert _anchor("Tenant quality: out of scope, `calibration`") == "tenant-quality-out-of-scope-calibration"


def _paths_outside(text: str) -> list[str]:
    """Paths in `text`, code included, that leave the repository; links are left to the link check (a link is
    relative to its document)."""
    return _OUTSIDE.findall(_LINK.sub("", text))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_documents_name_no_path_outside_the_repository(document: Path) -> None:
    outside = _paths_outside(document.read_text(encoding="utf-8"))
    assert not outside, f"{document.relative_to(ROOT)} names paths outside the repository: {outside}"


def test_paths_outside_are_found_in_prose_and_code_but_not_in_links() -> None:
    sample = "run `bench.x --data ../shared/data` or see /work/main/a; [results](../bench/r.json), data/b.jsonl, a/../b"
    assert _paths_outside(sample) == ["../shared/data", "/work/main/a"]
