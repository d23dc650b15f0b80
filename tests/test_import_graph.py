"""The package import graph: no cycles between components, nothing imports upward, and the ML core stands alone.

A component is a package under `app/` (`app.web`, `app.ml`, ...) or a top-level module (`app.bootstrap`).
Each may import only components of a lower layer (or itself); `app/ml` and `app/meta` import nothing from the
service stack. Imports are read with `ast`, so the check covers every module, imported at run time or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

LAYERS: dict[str, int] = {  # higher layers may import lower ones
    "ml": 0,
    "meta": 1,
    "store": 1,
    "config": 1,
    "config_doc": 2,
    "access": 2,
    "services": 2,
    "process_tuning": 2,
    "bootstrap": 3,
    "web": 4,
    "cli": 5,
}
SERVICE_STACK = {"web", "services", "store", "config", "access", "bootstrap"}


def component(module: str) -> str:
    """`app.web.routes` -> `web`; `app.bootstrap` -> `bootstrap`."""
    return module.split(".")[1]


def imports() -> dict[str, set[str]]:
    """component -> components it imports (absolute `app.*` imports, wherever they appear in the module)."""
    graph: dict[str, set[str]] = {}
    for path in APP.rglob("*.py"):
        relative = path.relative_to(APP.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        if len(parts) < 2:
            continue  # app/__init__.py
        source = component(".".join(parts))
        found = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found.update(component(name) for name in names if name.startswith("app.") and name != "app")
        found.discard(source)
    return graph


def test_every_component_has_a_layer() -> None:
    assert set(imports()) <= set(LAYERS), f"components without a layer: {set(imports()) - set(LAYERS)}"


def test_nothing_imports_upward_or_sideways() -> None:
    graph = imports()
    upward = [(src, dst) for src, dsts in graph.items() for dst in dsts if LAYERS[dst] >= LAYERS[src]]
    assert not upward, f"imports of a component of the same or a higher layer: {sorted(upward)}"


def test_the_ml_core_imports_nothing_from_the_service_stack() -> None:
    graph = imports()
    for core in ("ml", "meta"):
        assert not graph.get(core, set()) & SERVICE_STACK, (core, graph.get(core))


def test_no_component_imports_one_that_imports_it_back() -> None:
    graph = imports()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    cycles = [(src, dst) for src, dsts in graph.items() for dst in dsts if reaches(dst, src)]
    assert not cycles, f"import cycles: {sorted(cycles)}"
