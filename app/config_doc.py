"""Render the settings reference (env var, default, meaning) from `Settings` into docs/configuration.md.

`python -m app.config_doc` rewrites the table between the markers; `--check` exits 1 when it is stale.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from pydantic.fields import FieldInfo

from app.config import DEPRECATED_ALIASES, GROUPS, Settings
from app.ml import registry

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DOC = ROOT / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*(unset)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    text = str(value)
    if text.startswith(str(ROOT)):  # machine-independent: paths inside the checkout are shown relative
        text = Path(text).relative_to(ROOT).as_posix()
    return f"`{text}`" if text else '`""`'


def _choices(field: FieldInfo) -> str:
    literals = [arg for arg in typing.get_args(field.annotation) if typing.get_origin(arg) is typing.Literal]
    if typing.get_origin(field.annotation) is typing.Literal:
        literals.append(field.annotation)
    values = [value for literal in literals for value in typing.get_args(literal)]
    return f" One of: {', '.join(f'`{v}`' for v in values)}." if values else ""


def render() -> str:
    """The markdown tables: one per settings group (`GROUPS`), a row per setting in declaration order; then the
    deprecated aliases and the registered tiers."""
    prefix = Settings.model_config.get("env_prefix", "")
    header = ["| env var | default | meaning |", "|---|---|---|"]
    lines: list[str] = []
    for title, names in GROUPS.items():
        lines += [f"### {title}", "", *header]
        for name in names:
            field = Settings.model_fields[name]
            meaning = (field.description or "").replace("|", "\\|") + _choices(field)
            default = _default(field).replace("|", "\\|")
            lines.append(f"| `{prefix}{name.upper()}` | {default} | {meaning} |")
        lines.append("")
    lines += ["### Deprecated", "", *header]
    for alias, (tier, key) in DEPRECATED_ALIASES.items():
        generic = f"`{prefix}TIERS__{tier.upper()}__{key.upper()}`"
        lines.append(
            f"| `{prefix}{alias.upper()}` | *(deprecated)* | Same as {generic}, which wins when both are set. |"
        )
    return "\n".join([*lines, "", "### Encoder tiers", "", *_tier_table()])


def _tier_table() -> list[str]:
    """The registered encoder tiers and the spec values their overrides replace."""
    rows = [
        "| tier | source | checkpoint | dim | inner loop (steps, lr, scale) | prefix |",
        "|---|---|---|---|---|---|",
    ]
    for name in registry.names():
        spec = registry.spec(name)
        checkpoint = "`none`" if spec.checkpoint is None else f"`{spec.checkpoint.relative_to(ROOT).as_posix()}`"
        inner = f"{spec.inner.steps}, {spec.inner.lr}, {spec.inner.logit_scale}"
        rows.append(f"| `{name}` | `{spec.source}` | {checkpoint} | {spec.dim} | {inner} | `{spec.prefix!r}` |")
    return rows


def update(text: str) -> str:
    """`text` with the table between the markers replaced."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{CONFIG_DOC.name} lacks the markers {START} ... {END}")
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    current = CONFIG_DOC.read_text(encoding="utf-8")
    fresh = update(current)
    if args.check:
        if fresh != current:
            print("docs/configuration.md settings table is stale: run `python -m app.config_doc`", file=sys.stderr)
            return 1
        return 0
    CONFIG_DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
