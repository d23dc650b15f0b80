"""Settings parsing edge cases documented in the settings table."""

from __future__ import annotations

import pytest

from app.config import Settings


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_oos_fallback_threshold_means_no_oos(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FEWSHOT_OOS_FALLBACK_THRESHOLD", value)
    assert Settings(_env_file=None).oos_fallback_threshold is None


def test_oos_fallback_threshold_still_parses_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_OOS_FALLBACK_THRESHOLD", "0.2")
    assert Settings(_env_file=None).oos_fallback_threshold == 0.2
    monkeypatch.delenv("FEWSHOT_OOS_FALLBACK_THRESHOLD")
    assert Settings(_env_file=None).oos_fallback_threshold == 0.35
