"""No import circles among the command and public-API modules: none of them imports a module that imports
it back (module level or inside a function), so each loads on its own and the layering stays readable."""

from __future__ import annotations

import ast
import os

import scoremix

PACKAGE = os.path.dirname(os.path.abspath(scoremix.__file__))
CHECKED = ("scoremix.cli", "scoremix.cli_eval", "scoremix.cli_common", "scoremix.api", "scoremix.export",
           "scoremix.tracking", "scoremix.sampling", "scoremix.checkpoint", "scoremix.eval_protocol",
           "scoremix.progress", "scoremix.trainer")


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
    """The scoremix modules `module` imports anywhere in its source ("from .x import y" counts x, or x.y when
    that is a module)."""
    path = files[module]
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in files and m != module}


def test_imports_of_reads_relative_imports():
    files = module_files()
    assert "scoremix.cli_common" in imports_of("scoremix.cli", files)
    assert "scoremix.sampling" in imports_of("scoremix.api", files)


def test_no_checked_module_imports_one_that_imports_it_back():
    files = module_files()
    graph = {m: imports_of(m, files) for m in files}
    circles = sorted({tuple(sorted((a, b))) for a in CHECKED for b in graph[a] if a in graph[b]})
    assert circles == [], f"import circles: {circles}"
