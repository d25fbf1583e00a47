"""No import cycles inside the ``emollm`` package, lazy (function-level) imports included.

The graph is read from the source with :mod:`ast`, nothing is imported: every ``import emollm.x`` and
``from emollm.x import y`` anywhere in a module (at module level, in a function, under ``try``) is an edge;
``from emollm.x import y`` points at ``emollm.x.y`` when ``y`` is a submodule, else at ``emollm.x``; relative
imports are resolved against the importing module. Parent packages that Python runs first are not edges
(every ``emollm.x.y`` would otherwise depend on ``emollm/x/__init__.py``, which often imports it back).
Imports under ``if TYPE_CHECKING:`` never run and are skipped. ``importlib.import_module("...")`` with a
literal name (``emollm/__init__.py``'s lazy attributes) is not read: a string is not an import statement.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "emollm"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``emollm.x.Thing`` -> ``emollm.x``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Modules of the package that module ``name`` imports -> the line of the first such import."""
    is_package = path.name == "__init__.py"
    edges: dict[str, int] = {}

    def add(target: str | None, line: int):
        if target is not None and target != name:
            edges.setdefault(target, line)

    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(_resolve(alias.name, modules), node.lineno)
            continue
        if node.level:  # relative: from the package that holds this module, up level - 1 more
            anchor = name.split(".") if is_package else name.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in modules else _resolve(base, modules), node.lineno)
    return edges


def import_graph(root: Path = ROOT) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = module_files(root)
    return {name: import_edges(name, path, modules) for name, path in modules.items()}, modules


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), each sorted.

    Tarjan's algorithm, iterative. Every cycle lies inside one component, and every component of two or more
    modules holds at least one cycle.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
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
                if len(component) > 1 or node in graph.get(node, {}):
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str], start: str) -> list[str]:
    """A shortest cycle from ``start`` through the component's modules: ``[a, b, ..., a]`` (breadth-first)."""
    members = set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def cycles_covering(graph: dict[str, dict[str, int]], component: list[str]) -> list[list[str]]:
    """Shortest cycles through the component until every module of it is on one of them."""
    cycles, covered = [], set()
    for start in component:
        if start not in covered:
            cycles.append(shortest_cycle(graph, component, start))
            covered.update(cycles[-1])
    return cycles


def describe(graph, modules, cycle: list[str]) -> str:
    """``a -> b -> a`` and, below it, where each import is (file:line)."""
    root = ROOT.parent
    lines = [" -> ".join(cycle)]
    for source, target in zip(cycle, cycle[1:]):
        where = modules[source].relative_to(root)
        lines.append(f"    {where}:{graph[source][target]} imports {target}")
    return "\n".join(lines)


def test_the_graph_sees_lazy_submodule_and_relative_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from emollm.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import emollm.c\nfrom .. import a\nthing = 1\n"
    )
    (pkg / "c.py").write_text("import emollm.sub.b\nfrom emollm.a import f\n")
    graph, _ = import_graph(pkg)
    assert graph["emollm.a"] == {"emollm.sub.b": 2}  # a submodule named in from-import, inside a function
    assert graph["emollm.sub"] == {"emollm.sub.b": 1}  # relative, from a package's __init__
    assert graph["emollm.sub.b"] == {"emollm.a": 4}  # `from .. import a`; the TYPE_CHECKING import is skipped
    assert graph["emollm.c"] == {"emollm.sub.b": 1, "emollm.a": 2}
    assert find_cycles(graph) == [["emollm.a", "emollm.sub.b"]]
    assert cycles_covering(graph, ["emollm.a", "emollm.sub.b"]) == [["emollm.a", "emollm.sub.b", "emollm.a"]]


def test_cycles_cover_every_module_of_a_knot():
    graph = {"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"b": 1}, "d": {"d": 1}, "e": {"a": 1}}
    assert find_cycles(graph) == [["a", "b", "c"], ["d"]]
    assert cycles_covering(graph, ["a", "b", "c"]) == [["a", "b", "a"], ["c", "b", "c"]]
    assert cycles_covering(graph, ["d"]) == [["d", "d"]]


def test_no_import_cycles():
    graph, modules = import_graph()
    assert "emollm.modeling.emotion_lm" in graph and len(graph) > 20  # the walk found the package
    cycles = [cycle for component in find_cycles(graph) for cycle in cycles_covering(graph, component)]
    listing = "\n".join(describe(graph, modules, cycle) for cycle in cycles)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) in {PACKAGE}/ (break each at one of its imports):\n{listing}"
    )
