"""Settings parsing edge cases documented in the settings table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.config import GROUPS, Settings
from app.ml import registry
from app.ml.packaged import SHIPPED_CHECKPOINT
from app.ml.policy import Limits, OosRule
from app.ml.registry import DEFAULT_MODELS_DIR, MINILM, SHIPPED_CHECKPOINT_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_oos_fallback_threshold_means_no_oos(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FEWSHOT_OOS_FALLBACK_THRESHOLD", value)
    assert Settings(_env_file=None).oos_fallback_threshold is None


def test_oos_fallback_threshold_still_parses_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_OOS_FALLBACK_THRESHOLD", "0.2")
    assert Settings(_env_file=None).oos_fallback_threshold == 0.2
    monkeypatch.delenv("FEWSHOT_OOS_FALLBACK_THRESHOLD")
    assert Settings(_env_file=None).oos_fallback_threshold == 0.35


def test_grouped_defaults_are_the_dataclass_defaults() -> None:
    """Each default is written once: the settings of a group take theirs from the dataclass a lower layer uses."""
    settings = Settings(_env_file=None)
    assert settings.limits() == Limits()
    assert settings.oos_rule() == OosRule()
    assert Path(settings.models_dir) == DEFAULT_MODELS_DIR
    assert registry.spec(MINILM.name).checkpoint == SHIPPED_CHECKPOINT_DIR == ROOT / SHIPPED_CHECKPOINT


def test_group_builders_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_MAX_TEXTS", "7")
    monkeypatch.setenv("FEWSHOT_OOS_QUANTILE", "0.1")
    monkeypatch.setenv("FEWSHOT_OOS_FALLBACK_THRESHOLD", "")
    settings = Settings(_env_file=None)
    assert settings.limits() == dataclasses.replace(Limits(), max_texts=7)
    assert settings.oos_rule() == OosRule(quantile=0.1, fallback=None)


def test_every_setting_is_in_one_group_in_declaration_order() -> None:
    assert [name for names in GROUPS.values() for name in names] == list(Settings.model_fields)
