"""Fail early, with the install command, when a benchmark needs the optional `bench` extra."""

from __future__ import annotations

import importlib.util

INSTALL = "pip install -e '.[bench]'"


def require_bench_extra(*modules: str) -> None:
    """Exit with a message naming `pip install -e '.[bench]'` when any of `modules` is not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not installed: this benchmark needs the bench extra ({INSTALL})")
