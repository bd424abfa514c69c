"""The project's shape: no import circles, a core that never imports streamlit, files a reader can hold.

Every .py of the project is parsed (never imported) outside tests/, bench/,
scripts/, docs/, static/ and the virtual environment. Imports inside functions
count: a circle that is only closed at call time is still a circle to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {"tests", "bench", "scripts", "docs", "static", ".venv", "venv", "data", "runs", "node_modules"}
CORE = "alexnet_core"
MAX_CORE_LINES = 600


def project_files() -> dict[str, Path]:
    """Module name -> file, for every project .py outside the skipped folders."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if any(part in SKIPPED or part.startswith(".") for part in parts[:-1]):
            continue
        names = list(parts[:-1]) + ([] if path.name == "__init__.py" else [path.stem])
        found[".".join(names)] = path
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its file.

    ``from package import x`` names the submodule ``package.x`` when there is
    one, else the package. A package importing its own submodules is not a
    circle: those edges are left out.
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c of a plain module a.b
                target = target.rpartition(".")[0]
            if target and target != name and not (is_package and target.startswith(name + ".")):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_project():
    graph = import_graph()
    assert {"alexnet_core.runs", "alexnet_core.training", "alexnet_core.config"} <= set(graph)
    assert "alexnet_core.runfiles" in graph["alexnet_core.training"]
    assert "alexnet_core.config" in graph["alexnet_core.runs"]
    assert "alexnet_core.training" in graph["alexnet_core.runs"]  # imported inside run_worker: it counts


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_the_projects_modules():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_core_never_imports_streamlit():
    for path in sorted((ROOT / CORE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "streamlit" for n in names), f"{path.name}:{node.lineno} imports streamlit"


def test_core_files_stay_readable_in_one_sitting():
    long = {p.name: n for p in sorted((ROOT / CORE).rglob("*.py")) if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_CORE_LINES}
    assert not long, f"alexnet_core files above {MAX_CORE_LINES} lines: {long}"
