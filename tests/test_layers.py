"""The package import graph of `app`: no cycles; the HTTP layer on top, the composition root below it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _imports(path: Path) -> set[str]:
    """The `app.*` modules `path` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("app.")}


def _package(module: str) -> str:
    return module.split(".")[1]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in APP.rglob("*.py"):
        source = path.relative_to(APP).parts[0].removesuffix(".py")
        graph[source] |= {_package(name) for name in _imports(path)} - {source}
    return graph


def test_no_package_imports_one_that_imports_it_back() -> None:
    graph = package_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    cycles = [package for package in list(graph) if reaches(package, package, {package})]
    assert cycles == []


def test_the_http_layer_is_on_top() -> None:
    graph = package_graph()
    assert {package for package, imported in graph.items() if "web" in imported} == {"cli"}
    assert {package for package, imported in graph.items() if "bootstrap" in imported} == {"web"}
    assert graph["access"] <= {"store"}  # keys, rate limits and the guard, handed a Redis client


def test_only_the_factory_and_server_options_read_settings_in_the_web_layer() -> None:
    readers = {path.name for path in (APP / "web").glob("*.py") if "app.config" in _imports(path)}
    assert readers == {"app.py", "server.py"}
