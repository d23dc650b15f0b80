"""Benchmarks find their data in one way: `--data`, else `$FEWSHOT_DATA_DIR`, else `data/` in the checkout."""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

import pytest

from bench.common.data import CHECKOUT_DATA, DATA_ENV, add_data_option, default_data_dir

ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser()
    add_data_option(parser)
    return parser.parse_args(argv).data


def test_the_environment_variable_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert _parse([]) == tmp_path
    assert _parse(["--data", "elsewhere"]) == Path("elsewhere")  # the option wins


@pytest.mark.parametrize("environ", [{}, {DATA_ENV: ""}], ids=["unset", "empty"])
def test_without_the_variable_the_data_folder_of_the_checkout(environ: dict[str, str]) -> None:
    assert default_data_dir(environ) == CHECKOUT_DATA == ROOT / "data"


def test_the_checkout_data_folder_is_ignored_by_git() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "data/banking77.jsonl"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 0


def _declares_data_itself(path: Path) -> bool:
    """Whether the module adds a `--data` option with its own `add_argument` call."""
    return any(
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "add_argument"
        and any(isinstance(arg, ast.Constant) and arg.value == "--data" for arg in node.args)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    )


def test_every_benchmark_takes_data_through_the_shared_option() -> None:
    modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "bench").rglob("*.py"))
    own = {module for module in modules if _declares_data_itself(ROOT / module)}
    assert "bench/common/data.py" in own  # the one declaration (and the finder sees one)
    own -= {"bench/common/data.py"}
    assert not own, f"declare --data with bench.common.data.add_data_option: {sorted(own)}"
    assert not [module for module in modules if "shared/data" in (ROOT / module).read_text(encoding="utf-8")]
