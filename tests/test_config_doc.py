"""The settings table in docs/configuration.md is generated from `Settings` and must be current."""

from __future__ import annotations

from app.config import Settings
from app.config_doc import CONFIG_DOC, render, update


def test_settings_table_is_current() -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    assert update(text) == text, "docs/configuration.md is stale: run `.venv/bin/python -m app.config_doc`"


def test_every_setting_is_documented() -> None:
    table = render()
    for name, field in Settings.model_fields.items():
        assert f"`FEWSHOT_{name.upper()}`" in table
        assert field.description, f"setting {name} has no description"
    assert "/work/" not in table  # no machine-specific paths
