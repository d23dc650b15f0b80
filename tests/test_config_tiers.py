"""Tiers in settings: `FEWSHOT_ENCODERS` picks registered specs, `FEWSHOT_TIERS__<NAME>__<FIELD>` overrides one,
and each deprecated per-tier variable still works through the one alias table."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import DEPRECATED_ALIASES, Settings
from app.ml.registry import DEFAULT_ENCODER, MINILM, MPNET, SHIPPED_CHECKPOINT_DIR

ALIAS_VALUES = {"source": "/some/encoder", "sha256": "cd" * 32, "checkpoint": "/some/checkpoint"}
RESOLVED = {"source": "/some/encoder", "sha256": "cd" * 32, "checkpoint": Path("/some/checkpoint")}


def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    for alias in DEPRECATED_ALIASES:
        monkeypatch.delenv(f"FEWSHOT_{alias.upper()}", raising=False)


def test_defaults_are_the_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    settings = Settings(encoders=f"{MPNET.name},{MINILM.name}", _env_file=None)
    mpnet, minilm = settings.tier(MPNET.name), settings.tier(MINILM.name)
    assert (mpnet.source, mpnet.sha256, mpnet.checkpoint, mpnet.inner) == (
        MPNET.source,
        MPNET.sha256,
        None,
        MPNET.inner,
    )
    assert (minilm.source, minilm.sha256, minilm.inner) == (MINILM.source, MINILM.sha256, MINILM.inner)
    assert minilm.checkpoint == (SHIPPED_CHECKPOINT_DIR if SHIPPED_CHECKPOINT_DIR.exists() else None)


@pytest.mark.parametrize("alias", list(DEPRECATED_ALIASES))
def test_each_deprecated_variable_sets_its_tier_override(alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    tier, key = DEPRECATED_ALIASES[alias]
    monkeypatch.setenv(f"FEWSHOT_{alias.upper()}", ALIAS_VALUES[key])
    from_env = Settings(_env_file=None)
    assert getattr(from_env.tiers[tier], key) == ALIAS_VALUES[key]
    assert getattr(from_env.tier(tier), key) == RESOLVED[key]
    monkeypatch.delenv(f"FEWSHOT_{alias.upper()}")
    by_keyword = Settings(**{alias: ALIAS_VALUES[key]}, _env_file=None)
    assert getattr(by_keyword.tier(tier), key) == RESOLVED[key]


def test_the_generic_override_wins_over_the_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    monkeypatch.setenv("FEWSHOT_MPNET_CHECKPOINT", "/old")
    monkeypatch.setenv("FEWSHOT_TIERS__MPNET__CHECKPOINT", "/new")
    monkeypatch.setenv("FEWSHOT_TIERS__MPNET__INNER_STEPS", "9")
    settings = Settings(_env_file=None)
    assert settings.tier(MPNET.name).checkpoint == Path("/new") and settings.tier(MPNET.name).inner.steps == 9
    assert settings.tier(MINILM.name).inner == MINILM.inner


def test_aliases_in_a_dotenv_file_still_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    env_file = tmp_path / ".env"
    env_file.write_text("FEWSHOT_CHECKPOINT=none\nFEWSHOT_TIERS__MPNET__SHA256=\n", encoding="utf-8")
    settings = Settings(_env_file=env_file)
    assert settings.tier(MINILM.name).checkpoint is None and settings.tier(MPNET.name).sha256 is None


def test_the_top_level_inner_loop_settings_apply_to_the_default_tier_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    settings = Settings(encoders=f"{MPNET.name},{MINILM.name}", inner_steps=11, _env_file=None)
    assert settings.tier(MPNET.name).inner.steps == 11 and settings.tier(MINILM.name).inner == MINILM.inner
    assert Settings(inner_lr=0.5, _env_file=None).tier(DEFAULT_ENCODER).inner.lr == 0.5


def test_a_checkpoint_of_none_or_an_absent_shipped_default_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch)
    for value in ("none", "NONE", ""):
        assert Settings(tiers={MINILM.name: {"checkpoint": value}}, _env_file=None).tier(MINILM.name).checkpoint is None
    with pytest.raises(ValueError, match="extra"):
        Settings(tiers={MINILM.name: {"pooling": "cls"}}, _env_file=None)
