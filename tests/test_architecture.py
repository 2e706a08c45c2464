"""Imports flow one way: each module imports from its own layer and the layers below it only.

The layers, lowest first, are `LAYERS` below. The test reads every module under `src/instill`
with `ast` (nothing is imported), so it also sees imports inside functions: a lazy import that
runs back up is still an arrow the wrong way, it is only hidden until the function runs. Imports
under `if TYPE_CHECKING:` are left out (they never run). On top of the layer order, the imports
that run when a module is loaded (module level) must not form a cycle.

Edges: `import a.b.c` and `from a.b import c` (when `a/b/c.py` or `a/b/c/` exists) go to the
module `a.b.c` itself; `from a.b import name` goes to `a.b`. Importing `a.b.c` also runs the
parent packages' `__init__`, but that implicit edge is not counted; a package `__init__` that
imports its own submodules does count as edges from it.

A new top-level package or module must be placed in `LAYERS` by hand (the coverage test fails
until it is), so where it sits in the flow is a decision, not an accident.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "instill"

#: Top-level packages and modules of `instill`, lowest layer first. Names in one tuple share a
#: layer. `__init__` is the package root, which re-exports the data types (`Conversation`).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "errors", "atomic", "progress", "allocator"),  # utilities every stage may use
    ("data", "__init__"),  # rows -> Conversation -> ids + labels -> packed rows
    ("models",),  # loading models and tokenizers
    ("generate",),  # generation with the training renderer
    ("eval",),  # tasks, metrics, runner (training runs evaluation, so eval sits below train)
    ("train",),  # the loop, the loss, checkpoints
    ("pipelines",),  # what combines stages (quickstart, synthesis)
    ("cli",),  # the command line
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    path: Path
    line: int
    module_level: bool

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (`instill.data` for data/__init__.py)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str:
    """The `LAYERS` name a module belongs to (its top-level package or module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of one module that land inside the package."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def resolve_from(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def add(target: str, node: ast.stmt, module_level: bool) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            found.append(Import(module, target, path, node.lineno, module_level))

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, module_level)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node, module_level)
        inner = module_level and not isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


def all_imports() -> list[Import]:
    modules = module_files()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def upward_imports(imports: list[Import]) -> list[str]:
    """One line per import that runs from a lower layer up to a higher one."""
    bad = []
    for imp in imports:
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src not in RANK or dst not in RANK:
            continue  # reported by the coverage test
        if RANK[dst] > RANK[src]:
            when = "" if imp.module_level else " (inside a function)"
            bad.append(f"{imp.where()}: {imp.source} -> {imp.target}{when}: {src} -> {dst}")
    return list(dict.fromkeys(bad))  # `from m import a, b` is one arrow


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """The cycles among module-level imports: one per strongly connected component."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.module_level and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    # Tarjan's algorithm, iteratively (no recursion limit on deep chains).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(_cycle_path(sorted(component), graph))
    return components


def _cycle_path(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle inside a strongly connected component, start repeated at the end."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth-first from `start` until an edge comes back to it
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in parents and child != start:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    return component  # pragma: no cover - a strongly connected component always has a cycle


# --------------------------------------------------------------------------- the tests


def test_layers_cover_every_top_level_package_and_module():
    """A new top-level folder or module must be placed in `LAYERS` on purpose."""
    present = {
        p.stem if p.suffix == ".py" else p.name
        for p in (SRC / PACKAGE).iterdir()
        if not p.name.startswith((".", "__pycache__"))
        and (p.suffix == ".py" or (p.is_dir() and any(p.rglob("*.py"))))
    }
    missing = sorted(present - set(RANK))
    assert not missing, (
        f"top-level package(s)/module(s) {missing} of src/{PACKAGE} are not in LAYERS "
        "(tests/test_architecture.py): place each in the import order"
    )


def test_imports_only_flow_down_the_layers():
    bad = upward_imports(all_imports())
    order = " -> ".join("/".join(names) for names in LAYERS)
    assert not bad, (
        f"{len(bad)} import(s) run up the layers ({order}); pass the object in instead, or "
        "move the code to the layer it belongs to:\n  " + "\n  ".join(bad)
    )


def test_no_import_cycles_at_module_level():
    cycles = import_cycles(all_imports())
    assert not cycles, "module-level import cycle(s):\n  " + "\n  ".join(
        " -> ".join(c) for c in cycles
    )


def test_the_checker_sees_function_level_relative_and_from_imports(tmp_path):
    """The walker itself: lazy, relative and `from pkg import module` imports all count."""
    pkg = tmp_path / PACKAGE / "data"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from instill.train import loop\n"
        "def f():\n    from instill.eval.tasks import get_task\n"
        "from .b import x\n"
    )
    (pkg / "b.py").write_text("import instill.data.a\n")
    modules = {
        "instill": tmp_path / PACKAGE / "__init__.py",
        "instill.data": pkg / "__init__.py",
        "instill.data.a": pkg / "a.py",
        "instill.data.b": pkg / "b.py",
        "instill.eval.tasks": pkg / "a.py",  # only its name matters
    }
    found = {
        (i.source, i.target, i.line, i.module_level)
        for name in ("instill.data", "instill.data.a", "instill.data.b")
        for i in imports_of(name, modules[name], modules)
    }
    assert found == {
        ("instill.data", "instill.data.a", 1, True),
        ("instill.data.a", "instill.eval.tasks", 5, False),
        ("instill.data.a", "instill.data.b", 6, True),
        ("instill.data.b", "instill.data.a", 1, True),
    }
    edges = [Import(s, t, pkg / "a.py", n, m) for s, t, n, m in found]
    assert import_cycles(edges) == [["instill.data.a", "instill.data.b", "instill.data.a"]]
