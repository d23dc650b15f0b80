"""Serving needs only the serving dependencies: the training-only packages (the `train` extra) are neither
required by the package nor imported on the way to a served prediction, and the image installs no extra."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ONLY = {"matplotlib": "matplotlib", "scipy": "scipy", "pyyaml": "yaml", "tqdm": "tqdm"}  # distribution: module
ABSENT_WHEN_SERVING = ["matplotlib", "scipy"]  # pyyaml and tqdm stay installed: transformers requires them

# A serving-only install simulated: matplotlib and scipy cannot be imported (libraries that use them when present,
# e.g. transformers' scipy, fall back as they would without them). The `fewshot` parser is built with its meta
# commands, the app created and served through its lifespan (adapt, predict) on the tiny encoder; the script
# prints the `app` modules that were loaded.
SERVE = """
import json, sys
for name in {modules!r}:
    sys.modules[name] = None
from fastapi.testclient import TestClient
from app.cli import build_parser
from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.web.app import create_app
from app.web.server import uvicorn_options
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

build_parser().parse_args(["serve"])
settings = Settings(checkpoint="none", log_level="warning", _env_file=None)
uvicorn_options(settings)
model = (build_tiny_encoder(packaged_tokenizer()), InnerLoopParams.constant(2, 0.04, 10.0), None)
examples = [{{"text": f"{{word}} {{i}}", "label": word}} for word in ("hello", "bye") for i in range(3)]
with TestClient(create_app(settings, model=model)) as client:
    client.post("/adapt", json={{"tenant_id": "t", "examples": examples}}).raise_for_status()
    client.post("/predict", json={{"tenant_id": "t", "texts": ["hello"]}}).raise_for_status()
print(json.dumps(sorted(name for name in sys.modules if name == "app" or name.startswith("app."))))
"""


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_training_packages_are_an_extra_that_make_test_installs() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    assert _names(project["dependencies"]) & set(TRAIN_ONLY) == set()
    assert _names(extras["train"]) == set(TRAIN_ONLY)
    assert f"{project['name']}[train]" in extras["dev"]  # `make test` installs .[dev]


def test_the_image_installs_the_serving_dependencies_only() -> None:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    installs = re.findall(r"pip install ([^&;\n]*)", text)
    targets = [word.strip("\"'") for install in installs for word in install.split() if not word.startswith("-")]
    project_targets = [target for target in targets if target.startswith(".")]
    assert "." in project_targets
    assert set(project_targets) <= {".", ".[mpnet]"}, project_targets


def _imported_top_level(path: Path) -> set[str]:
    """The top-level names of every module the file at `path` imports (anywhere in it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _source(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_serving_runs_without_the_training_packages() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SERVE.format(modules=ABSENT_WHEN_SERVING)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert [name for name in loaded if name.startswith("app.meta")] == ["app.meta", "app.meta.cli"]  # lazily
    importers = {name: _imported_top_level(_source(name)) & set(TRAIN_ONLY.values()) for name in loaded}
    assert {name: sorted(found) for name, found in importers.items() if found} == {}
