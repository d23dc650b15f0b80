"""The import graph of `app`: nothing imports upward, the HTTP layer on top and the composition root below it, the
ML core (`app/ml`, `app/meta`) stands alone, and no module reaches itself through its imports.

A component is a package under `app/` (`web`, `ml`, ...) or a top-level module (`bootstrap`, `cli`). Imports are
read with `ast`, so the checks cover every import: at module level, inside functions and under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _module_name(path: Path) -> str:
    """`app/ml/batching.py` -> `app.ml.batching`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in APP.rglob("*.py")}


def _imported(source: str, module: str, is_package: bool = False) -> set[str]:
    """The `app.*` modules `source` (the text of `module`) imports: `import app.x`, `from app.x import y` (`app.x`),
    and `from app.x import y` where `y` is itself a module (`app.x.y`); relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            parent = ".".join(filter(None, [base if node.level else "", node.module or ""]))
            for alias in node.names:
                submodule = f"{parent}.{alias.name}"
                names.add(submodule if submodule in MODULES else parent)
    return {name for name in names if name.startswith("app.")}


def _imports(path: Path) -> set[str]:
    """The `app.*` modules the file at `path` imports."""
    return _imported(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _package(module: str) -> str:
    return module.split(".")[1]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in APP.rglob("*.py"):
        source = path.relative_to(APP).parts[0].removesuffix(".py")
        graph[source] |= {_package(name) for name in _imports(path)} - {source}
    return graph


def module_graph() -> dict[str, set[str]]:
    """Every `app` module -> the `app` modules it imports."""
    return {name: _imports(path) & MODULES.keys() for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`: its strongly connected components of more than one node (and nodes that
    import themselves), each sorted (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


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


def test_no_module_reaches_itself_through_its_imports() -> None:
    found = cycles(module_graph())
    assert found == [], f"import circles: {found}"


def test_the_cycle_finder_reports_circles_and_only_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": {"a"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_are_read_in_every_form() -> None:
    source = """
import app.store.base
from app import config
from app.ml import batching, work as current
from app.ml.embedder import Embedder
from app.store import TenantStore
from . import metrics
from .errors import error_body
from ..ml import head


def later() -> None:
    from app.ml.pass_runner import PassRunner
"""
    assert _imported(source, "app.web.routes") == {
        "app.store.base",
        "app.config",
        "app.ml.batching",
        "app.ml.work",
        "app.ml.embedder",
        "app.store",
        "app.web.metrics",
        "app.web.errors",
        "app.ml.head",
        "app.ml.pass_runner",
    }
    assert _imported("from . import keys", "app.access", is_package=True) == {"app.access.keys"}


def test_the_http_layer_is_on_top() -> None:
    graph = package_graph()
    assert {package for package, imported in graph.items() if "web" in imported} == {"cli"}
    assert {package for package, imported in graph.items() if "bootstrap" in imported} == {"web"}
    assert graph["access"] <= {"store"}  # keys, rate limits and the guard, handed a Redis client


def test_only_the_factory_and_server_options_read_settings_in_the_web_layer() -> None:
    readers = {path.name for path in (APP / "web").glob("*.py") if "app.config" in _imports(path)}
    assert readers == {"app.py", "server.py"}
