"""`python -m app.meta.cli evaluate` runs on the ML core alone: none of the service stack gets imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_STACK = ("fastapi", "starlette", "pydantic", "pydantic_settings", "redis", "uvicorn")
SERVICE_PACKAGES = ("app.config", "app.services", "app.store", "app.api", "app.web", "app.access", "app.ops")

# runs the module as `python -m` would, then reports every module the process imported
RUNNER = """
import json, runpy, sys
sys.argv = ["app.meta.cli", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("app.meta.cli", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print("MODULES " + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


def _resplit(source: Path, target: Path, n_train: int) -> None:
    """The fixture's texts per label, re-split: `n_train` train texts (enough for 10 shots), the rest test."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for line in source.read_text().splitlines():
        row = json.loads(line)
        by_label[row["label"]].append(row["text"])
    rows = [
        {"text": text, "label": label, "split": "train" if i < n_train else "test"}
        for label, texts in by_label.items()
        for i, text in enumerate(texts)
    ]
    target.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.slow
def test_evaluate_cli_imports_no_service_stack(tmp_path, clinc_sample) -> None:
    data = tmp_path / "sample.jsonl"
    _resplit(clinc_sample, data, n_train=15)
    args = ["evaluate", "--data", str(data), "--checkpoint", "none", "--out", str(tmp_path / "out")]
    args += ["--name", "cli", "--episodes", "2", "--seeds", "1", "--cache", ""]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.split("MODULES ", 1)[1])
    assert "app.meta.evaluate" in modules and "app.ml.tenant_fit" in modules
    stack = [m for m in modules if m.split(".")[0] in SERVICE_STACK]
    ours = [m for m in modules if any(m == p or m.startswith(p + ".") for p in SERVICE_PACKAGES)]
    assert stack == [] and ours == []
    result = json.loads((tmp_path / "out" / "eval_cli.json").read_text())
    assert set(result["protocols"]) == {
        "5-way 1-shot",
        "5-way 5-shot",
        "all-way 1-shot",
        "all-way 5-shot",
        "all-way 10-shot",
    }
    assert result["paired_difference_reference"].startswith("frozen base + /adapt inner loop (50 steps")
