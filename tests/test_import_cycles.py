"""No import circles inside the scoremix package: no module imports one that imports it back, directly or
through others, counting module-level imports and imports inside functions alike (read from the source with
`ast`), so each module loads on its own and the layering stays readable."""

from __future__ import annotations

import ast
import os

import scoremix

PACKAGE = os.path.dirname(os.path.abspath(scoremix.__file__))


def module_files() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = "scoremix." + os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def imports_of(module: str, files: dict[str, str]) -> set[str]:
    """The scoremix modules `module` imports anywhere in its source, at module level or inside a function
    ("from .x import y" counts x, or x.y when that is a module)."""
    path = files[module]
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    with open(path) as fh:
        tree = ast.parse(fh.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in files and m != module}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (module -> the modules it imports): one loop a -> ... -> a for each
    group of modules that reach each other (Tarjan's strongly connected components), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

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
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_loop_through(group, graph) for group in groups)


def _loop_through(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest loop from the group's first module back to itself, inside the group (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} holds no loop")


def test_imports_of_reads_relative_and_function_level_imports():
    files = module_files()
    assert "scoremix.cli_common" in imports_of("scoremix.cli", files)  # module level, relative
    assert "scoremix.trainer" in imports_of("scoremix.cli", files)  # inside cmd_train
    assert "scoremix.sampling" in imports_of("scoremix.api", files)  # inside functions only
    assert "scoremix.checkpoint" in imports_of("scoremix.trainer", files)  # `from . import checkpoint as ckpt`


def test_import_circles_finds_direct_and_longer_loops():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"a"}}
    assert import_circles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_the_package():
    files = module_files()
    graph = {m: imports_of(m, files) for m in files}
    circles = import_circles(graph)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)
