"""The package import graph of `app`: no cycles, nothing imports upward, the HTTP layer on top and the
composition root below it, and the ML core (`app/ml`, `app/meta`) stands alone.

A component is a package under `app/` (`web`, `ml`, ...) or a top-level module (`bootstrap`, `cli`). Imports are
read with `ast`, so the check covers every module, imported at run time or not.
"""

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


LAYERS: dict[str, int] = {  # a component may import only components of a lower layer
    "__init__": 0,
    "ml": 0,
    "meta": 1,
    "store": 1,
    "config": 1,
    "config_doc": 2,
    "access": 2,
    "services": 2,
    "process_tuning": 2,
    "report_client": 2,  # `fewshot report`: an HTTP client of the service, stdlib only
    "bootstrap": 3,
    "web": 4,
    "cli": 5,
}
SERVICE_STACK = {"web", "services", "store", "config", "access", "bootstrap"}


def test_every_component_has_a_layer_and_imports_only_lower_ones() -> None:
    graph = package_graph()
    assert set(graph) <= set(LAYERS), f"components without a layer: {set(graph) - set(LAYERS)}"
    upward = sorted((src, dst) for src, dsts in graph.items() for dst in dsts if LAYERS[dst] >= LAYERS[src])
    assert upward == [], f"imports of a component of the same or a higher layer: {upward}"


def test_the_ml_core_imports_nothing_from_the_service_stack() -> None:
    graph = package_graph()
    assert graph["ml"] & SERVICE_STACK == set()
    assert graph["meta"] & SERVICE_STACK == set()


def test_only_the_composition_root_the_cli_and_the_web_factory_read_settings() -> None:
    readers = {path.relative_to(APP).as_posix() for path in APP.rglob("*.py") if "app.config" in _imports(path)}
    assert readers == {"bootstrap.py", "cli.py", "config_doc.py", "web/app.py", "web/server.py"}


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
