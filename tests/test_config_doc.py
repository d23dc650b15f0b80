"""The README's settings table is generated from `Settings` and must be current."""

from __future__ import annotations

from app.config import Settings
from app.config_doc import README, render, update


def test_readme_settings_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert update(text) == text, "README.md settings table is stale: run `.venv/bin/python -m app.config_doc`"


def test_every_setting_is_documented() -> None:
    table = render()
    for name, field in Settings.model_fields.items():
        assert f"`FEWSHOT_{name.upper()}`" in table
        assert field.description, f"setting {name} has no description"
    assert "/work/" not in table  # no machine-specific paths
