"""`fewshot meta-train` and `fewshot evaluate` (registered on the main CLI)."""

from __future__ import annotations

import argparse


def register_meta_commands(commands: argparse._SubParsersAction) -> None:
    """Add the meta-learning subcommands to the `fewshot` parser."""
    return None
