"""The package's import graph, read from the source (ast): nn_xp.backends imports nothing else of
nn_xp, and no import among nn_xp's modules runs in a circle."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import nn_xp

ROOT = Path(nn_xp.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("nn_xp", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, top_level_only: bool = False) -> set[str]:
    """The nn_xp modules that module `name` imports: all of them, or only those imported when it
    loads (statements at module level, not inside a function)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from package import module` imports that module (its package is loaded already)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _is_submodule(base, alias.name) else base)
    return {m for m in found if m in MODULES} - {name}


def _is_submodule(package: str, name: str) -> bool:
    """True where `name` in `package` is a module of source or a compiled extension (_native)."""
    if f"{package}.{name}" in MODULES:
        return True
    folder = ROOT.joinpath(*package.split(".")[1:])
    return any(folder.glob(f"{name}.*.so")) or any(folder.glob(f"{name}.*.pyd"))


def test_every_module_imports():
    for name in MODULES:
        if name != "nn_xp.__main__":  # the command line itself: it runs on import
            importlib.import_module(name)


def test_the_backends_import_nothing_else_of_nn_xp():
    inside = {name for name in MODULES if name == "nn_xp.backends" or name.startswith("nn_xp.backends.")}
    assert len(inside) >= 5  # the test reads the package it means to
    outside = {name: sorted(_imports(name, top_level_only=False) - inside) for name in sorted(inside)}
    assert {name: found for name, found in outside.items() if found} == {}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_the_modules():
    """Counting every import, those inside functions too (a lazy import only hides a circle). The
    package root `nn_xp` is left out: it gathers the public names, and modules read only
    `__version__` from it."""
    graph = {name: _imports(name, top_level_only=False) - {"nn_xp"} for name in MODULES}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("old", ["nn_xp.backend", "nn_xp.ops", "nn_xp.numpy_ops", "nn_xp.cupy_ops"])
def test_the_backends_modules_are_in_one_place(old):
    assert old not in MODULES
