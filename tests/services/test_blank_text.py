"""The blank check (`is_blank`): one regex search that agrees with the per-character definition (`is_invisible`)
on every code point, and looks up no character in the Unicode database per request."""

from __future__ import annotations

import sys
import unicodedata
from types import SimpleNamespace

import pytest

from app.services import validation
from app.services.errors import ServiceError
from app.services.validation import Limits, check_text, is_blank, is_invisible


def test_is_blank_equals_the_definition_on_every_code_point() -> None:
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    disagree = [f"U+{ord(char):04X}" for char in every if is_blank(char) != is_invisible(char)]
    assert disagree == []


@pytest.mark.parametrize(
    ("text", "blank"),
    [
        ("", True),
        (" \t\r\n\x0b\x0c\x85\xa0", True),
        ("\u200b\ufeff\u2066\u202e\u2028\u2029\x00", True),  # zero-width, BOM, direction, separators, NUL
        ("\u3164\u115f\u1160\uffa0\u2800 \u3000", True),  # Hangul fillers, braille blank, ideographic space
        ("\u200b" * 2000, True),
        ("\u200b" * 1999 + "x", False),
        ("  \u0301", False),  # a combining mark is drawn
        ("\ue000", False),  # private use
        ("\U0010ffff", False),  # unassigned
        ("\ud800", False),  # a lone surrogate (refused as invalid text before the blank check)
    ],
)
def test_is_blank_on_strings(text: str, blank: bool) -> None:
    assert is_blank(text) is blank
    assert all(map(is_invisible, text)) is blank


def test_the_blank_check_looks_up_no_character_in_the_unicode_database(monkeypatch: pytest.MonkeyPatch) -> None:
    is_blank("x")  # the pattern is built once per process (when the first service is built)
    lookups: list[str] = []

    def category(char: str) -> str:
        lookups.append(char)
        return unicodedata.category(char)

    monkeypatch.setattr(validation, "unicodedata", SimpleNamespace(category=category))
    for i in range(256):  # a full /predict request of zero-width text
        with pytest.raises(ServiceError) as refused:
            check_text("\u200b" * 2000, Limits(), f"texts[{i}]")
        assert refused.value.code == "empty_text"
    assert lookups == []
