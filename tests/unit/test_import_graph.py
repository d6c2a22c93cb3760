"""The package's import graph, read from the source: no cycle, and no import of another module's ``_private`` name.

Only imports that run when a module is loaded count: a function-level import (allowed where it
has a reason, and then commented) and ``if TYPE_CHECKING:`` blocks are left out. A cycle found
here is broken by moving the shared piece down, never by hiding an import in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fusion_jobs"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _top_level_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Imports run at load time: module level, inside if/try/with blocks, not in TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.ExceptHandler):
            found += _top_level_imports(node)
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str]]:
    """(module imported, name taken from it or "") for each name of one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, "") for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
    out = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        out.append((submodule, "") if submodule in MODULES else (base, alias.name))
    return out


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    private: list[str] = []
    for module, path in MODULES.items():
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target, name in _targets(module, node):
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != module:
                    edges[module].add(target)
                    if name.startswith("_") and not name.startswith("__"):
                        private.append(f"{module} imports {target}.{name}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    edges, _ = _graph()
    assert "fusion_jobs.middleware.lifecycle" in edges["fusion_jobs.middleware"]
    assert "fusion_jobs.backends.broker" not in edges["fusion_jobs.middleware.lifecycle"]


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_the_package():
    assert _cycles(_graph()[0]) == []


def test_no_module_imports_another_modules_private_names():
    assert _graph()[1] == []
