"""The package's shape, read from the source (ast): nn_xp.backends imports nothing else of nn_xp,
no import among nn_xp's modules runs in a circle, the layers import one way (down), and no module
is longer than one sitting's reading."""

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


def _import_lines(name: str, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(nn_xp module, line) for each import in module `name`: all of them, or only those imported
    when it loads (statements at module level, not inside a function)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from package import module` imports that module (its package is loaded already)
            for alias in node.names:
                found.append((f"{base}.{alias.name}" if _is_submodule(base, alias.name) else base, node.lineno))
    return [(module, line) for module, line in found if module in MODULES and module != name]


def _imports(name: str, top_level_only: bool = False) -> set[str]:
    """The nn_xp modules that module `name` imports (see `_import_lines`)."""
    return {module for module, _ in _import_lines(name, top_level_only)}


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


# The layers of the package, lowest first. A module may import modules of its own layer or of a
# lower one, never of a higher one: interfaces -> models -> data -> training -> network -> backends.
# Each entry names a subpackage, or a module directly in nn_xp/ ("__init__" is the package root).
LAYERS = (
    ("backends", "files", "_version"),  # the array libraries, safe file writes, the version: no nn_xp imports
    ("validation",),  # argument checks
    ("nn",),  # the network's math: layers, heads, Network
    ("optim",),  # optimizers, schedules, clipping
    ("training",),  # the loop behind fit, callbacks, history, precision, distributed
    ("io",),  # model files, ONNX export
    ("data",),  # datasets, file readers, the Preprocessor
    ("inspection",),  # score, summary, what `nn-xp inspect` prints
    ("models",),  # Sequential and MLP: the user's models
    ("parity", "plot", "signals", "sklearn", "cli", "__init__", "__main__"),  # the interfaces
)


def _layer_key(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _upward_imports(graph: dict[str, list[tuple[str, int]]], layers, where=lambda module: module) -> list[str]:
    """"file:line: a imports b (layer i -> j)" for each import in `graph` ({module: [(imported,
    line)]}) from a lower layer to a higher one."""
    rank = {key: index for index, keys in enumerate(layers) for key in keys}
    found = []
    for module, imported in sorted(graph.items()):
        for target, line in imported:
            low, high = rank[_layer_key(module)], rank[_layer_key(target)]
            if high > low:
                found.append(f"{where(module)}:{line}: {module} imports {target} "
                             f"(layer {layers[low]} -> {layers[high]})")
    return found


def test_every_module_has_a_layer():
    placed = {key for keys in LAYERS for key in keys}
    assert sorted({_layer_key(name) for name in MODULES} - placed) == []
    assert sorted(placed - {_layer_key(name) for name in MODULES}) == []  # no stale entry either


def test_the_layers_import_one_way():
    """Lazy imports (inside functions) count too: they only postpone the dependency."""
    graph = {name: _import_lines(name) for name in MODULES}
    relative = lambda module: str(MODULES[module].relative_to(ROOT.parent))  # noqa: E731
    upward = _upward_imports(graph, LAYERS, relative)
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_layer_check_finds_an_upward_import():
    layers = (("backends",), ("nn",), ("models",))
    graph = {"nn_xp.nn.network": [("nn_xp.backends", 3), ("nn_xp.models.sequential", 40)],
             "nn_xp.models.mlp": [("nn_xp.nn.layers", 7)], "nn_xp.backends.ops": []}
    assert _upward_imports(graph, layers) == [
        "nn_xp.nn.network:40: nn_xp.nn.network imports nn_xp.models.sequential (layer ('nn',) -> ('models',))"]


def _source_line(module: str, line: int) -> str:
    return MODULES[module].read_text(encoding="utf-8").splitlines()[line - 1]


def test_the_import_parser_gives_lines_and_lazy_imports():
    lines = dict(_import_lines("nn_xp.models.mlp"))
    assert "import Sequential" in _source_line("nn_xp.models.mlp", lines["nn_xp.models.sequential"])
    lazy = [line for module, line in _import_lines("nn_xp.training.callbacks") if module == "nn_xp.files"]
    assert lazy and _source_line("nn_xp.training.callbacks", lazy[0]).startswith(" ")  # inside a function
    assert "nn_xp.files" not in _imports("nn_xp.training.callbacks", top_level_only=True)


MAX_LINES = 600


def test_every_module_is_short_enough_to_read_in_one_sitting():
    lengths = {str(path.relative_to(ROOT.parent)): len(path.read_text(encoding="utf-8").splitlines())
               for path in MODULES.values()}
    assert len(lengths) >= 40  # the test reads the package it means to
    long = [f"{path}: {n} lines" for path, n in sorted(lengths.items()) if n > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)
