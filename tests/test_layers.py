"""The package's structure: layers that import only downwards, no import loops, a short root.

The import graph is read from the source (ast), every import counted wherever it sits (a deferred
import inside a function too) except under ``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import lr_widget

PACKAGE = Path(lr_widget.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("lr_widget.version", "lr_widget.curves"),
    ("lr_widget.suggestions",),
    ("lr_widget.plotting",),
    ("lr_widget.results",),
    ("lr_widget.engine",),
    ("lr_widget.diagnostics",),
    ("lr_widget.frameworks",),
    ("lr_widget.find", "lr_widget.demo", "lr_widget.fastai"),
    ("lr_widget.widget",),
    ("lr_widget.cli",),
    ("lr_widget", "lr_widget.__main__"),
)
"""Bottom to top: a module may import its own layer and those listed before it."""

TORCH_FREE = (
    "lr_widget.curves",
    "lr_widget.suggestions",
    "lr_widget.plotting",
    "lr_widget.results",
)
MAX_ROOT_MODULES = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest prefix listed in :data:`LAYERS`."""
    best, best_length = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"{module} is in no layer; add it to LAYERS"
    return best


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    return skipped


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import of ``module`` that runs, deferred or not."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node.lineno


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for imported, _ in imports_of(module):
            if imported in MODULES and imported != module:
                graph[module].add(imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {imported} (layer {layer_of(imported)}), "
        f"line {line}"
        for module in MODULES
        for imported, line in imports_of(module)
        if imported in MODULES and layer_of(imported) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_loops() -> None:
    assert cycles(package_graph()) == []


def test_the_loop_finder_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_lower_layers_never_import_torch(layer: str) -> None:
    offending = [
        f"{module}:{line} imports {imported}"
        for module in MODULES
        if module == layer or module.startswith(layer + ".")
        for imported, line in imports_of(module)
        if imported.split(".")[0] == "torch"
    ]
    assert not offending, "\n".join(offending)


def test_the_package_root_holds_at_most_six_modules() -> None:
    root_modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root_modules) <= MAX_ROOT_MODULES, root_modules


def test_the_readme_lists_the_layers_in_their_order() -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| folder | its job | imports |") :].split("\n\n")[0]
    listed = [
        name.strip().strip("`").removesuffix("/").removesuffix(".py")
        for row in table.splitlines()[2:]
        for name in row.split("|")[1].split(", ")
    ]
    named = ["lr_widget." + name for name in listed]
    assert [layer_of(module) for module in named] == sorted(layer_of(module) for module in named)
    covered = {prefix for prefixes in LAYERS for prefix in prefixes} - {
        "lr_widget",
        "lr_widget.__main__",
        "lr_widget.version",
    }
    assert set(named) == covered
