"""The package's shape, read from the source with ``ast``: no import cycle, no import of another
module's ``_private`` name, no outsize module, and every function-level import says why it is lazy.

Imports are counted at any level (module, class, function), except under ``if TYPE_CHECKING:``,
which never runs. An import ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module of the package, else to ``pkg``. A cycle is broken by moving the shared piece down, never by
hiding an import in a function.

A function-level import's reason is a comment starting with ``# lazy:`` on its own line, or just
above the run of consecutive imports it belongs to (a comment block, or ``try:  # lazy: ...``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
LAZY = "# lazy:"


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import that can run, with whether it sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_one(other, in_function)
                continue
            visit_one(child, in_function)

    def visit_one(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, in_function))
        visit(node, in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(tree, False)
    return found


def targets(
    name: str, node: ast.Import | ast.ImportFrom, known: set[str], is_package: bool
) -> set[tuple[str, str]]:
    """(module of the package loaded, name taken from it or "") for one import statement of ``name``."""
    if isinstance(node, ast.Import):
        return {(alias.name, "") for alias in node.names if alias.name in known}
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in known:
            found.add((submodule, ""))
        elif source in known:
            found.add((source, alias.name))
    return found


def import_graph(package: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the package's modules it imports; and every import of another module's ``_private`` name."""
    files = modules(package)
    known = set(files)
    graph: dict[str, set[str]] = {name: set() for name in files}
    private = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, _ in imports(tree):
            for target, taken in targets(name, node, known, path.name == "__init__.py"):
                if target != name:
                    graph[name].add(target)
                    if taken.startswith("_") and not taken.startswith("__"):
                        private.append(f"{name} imports {target}.{taken}")
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def shortest_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One shortest way around ``group`` from its first module back to it (breadth first)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node] & members):
            if other == start:
                return [*paths[node], start]
            if other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    return group


def unexplained_lazy_imports(path: Path) -> list[str]:
    """Function-level imports without a ``# lazy:`` reason on their line or just above their group."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines), str(path))
    groups: dict[int, int] = {}  # first line of each run of consecutive import statements, by line
    for node in ast.walk(tree):
        fields = [getattr(node, field, None) for field in ("body", "orelse", "finalbody")]
        body = [statement for field in fields if isinstance(field, list) for statement in field]
        for before, statement in zip([None, *body], body, strict=False):
            if isinstance(statement, ast.Import | ast.ImportFrom):
                same_run = isinstance(before, ast.Import | ast.ImportFrom) and before.lineno in groups
                groups[statement.lineno] = groups[before.lineno] if same_run else statement.lineno  # type: ignore[union-attr]
    bad = []
    for node, in_function in imports(tree):
        if not in_function:
            continue
        reason = _reason(lines, node.lineno, groups.get(node.lineno, node.lineno))
        if reason is None or re.search(r"\b(cycle|circular)", reason, re.IGNORECASE):
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            bad.append(f"{shown}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return bad


def _reason(lines: list[str], line: int, first: int) -> str | None:
    if LAZY in lines[line - 1]:
        return lines[line - 1].split(LAZY, 1)[1]
    above = first - 1
    code, _, comment_text = lines[above - 1].partition(LAZY) if above >= 1 else ("", "", "")
    if comment_text and code.split("#")[0].rstrip().endswith(":"):
        return comment_text  # "try:  # lazy: ..." opening the block the group starts
    comment: list[str] = []
    while above >= 1 and lines[above - 1].strip().startswith("#"):
        comment.insert(0, lines[above - 1].strip())
        above -= 1
    text = " ".join(comment)
    return text.split(LAZY, 1)[1] if comment and comment[0].startswith(LAZY) else None


# --- the package --------------------------------------------------------------------------------


def test_no_import_cycle_inside_fusion_jobs() -> None:
    graph, _ = import_graph(ROOT / "fusion_jobs")
    found = cycles(graph)
    if found:
        groups = "\n".join(
            f"{len(group)} modules: {', '.join(group)}\n  e.g. {' -> '.join(shortest_cycle(graph, group))}"
            for group in found
        )
        pytest.fail(f"import cycles (each a group of modules reaching one another):\n{groups}", pytrace=False)


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = import_graph(ROOT / "fusion_jobs")
    assert private == []


def test_no_module_over_400_lines_in_fusion_jobs_or_bench() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for folder in ("fusion_jobs", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "migrations" not in path.parts and (count := len(path.read_text().splitlines())) > MAX_LINES
    ]
    if long:
        pytest.fail(f"modules over {MAX_LINES} lines:\n" + "\n".join(long), pytrace=False)


def test_every_function_level_import_says_why_it_is_lazy() -> None:
    bad = [
        line
        for path in sorted((ROOT / "fusion_jobs").rglob("*.py"))
        for line in unexplained_lazy_imports(path)
    ]
    if bad:
        pytest.fail(
            f"function-level imports need a '{LAZY} <reason>' comment (a cycle is not one):\n"
            + "\n".join(bad),
            pytrace=False,
        )


# --- the checks themselves can fail ------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return tmp_path / "pkg"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import thing\n",
            "b.py": "def thing():\n    from . import a\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nfrom .a import _hidden\n",
            "sub/__init__.py": "from ..c import x\n",
        },
    )
    graph, private = import_graph(package)
    assert graph["pkg.sub"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}  # TYPE_CHECKING is left out
    assert private == ["pkg.c imports pkg.a._hidden"]
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert shortest_cycle(graph, ["pkg.a", "pkg.b"]) == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize(
    ("source", "explained"),
    [
        ("def f():\n    import os\n", False),
        ("def f():\n    import os  # lazy: keeps the import light\n", True),
        ("def f():\n    # lazy: the app registry is not ready\n    import os\n    import re\n", True),
        (
            "def f():\n    try:  # lazy: optional dependency\n        import os\n    except ImportError:\n        pass\n",
            True,
        ),
        ("def f():\n    # lazy: avoids a circular import\n    import os\n", False),
        ("def f():\n    x = 1  # lazy: not about an import\n    import os\n", False),
        ("import os\n", True),
    ],
)
def test_a_lazy_import_needs_its_reason(tmp_path: Path, source: str, explained: bool) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert (unexplained_lazy_imports(path) == []) is explained
