"""Where benchmarks read the public datasets (JSONL files, docs/data.md): one `--data` option for every benchmark.

The folder is `--data`, else `$FEWSHOT_DATA_DIR`, else `data/` inside the checkout (git-ignored).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

DATA_ENV = "FEWSHOT_DATA_DIR"
CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "data"


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """`$FEWSHOT_DATA_DIR` when set (and not empty), else `data/` inside the checkout."""
    return Path(environ[DATA_ENV]) if environ.get(DATA_ENV) else CHECKOUT_DATA


def add_data_option(parser: argparse.ArgumentParser, help: str = "folder of the JSONL datasets") -> None:
    """Add `--data` (a folder) with the default of `default_data_dir()`."""
    default = default_data_dir()
    parser.add_argument("--data", type=Path, default=default, help=f"{help} (default: ${DATA_ENV} or {default})")
