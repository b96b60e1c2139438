"""Measure the import structure and sizes of the pocfl source tree (the figures behind issue 13).

Builds the import graph of the packages pocfl, aggregator, trainer_client and zk with `ast`, counting
every import: module level, inside functions (lazy imports) and under `if TYPE_CHECKING:`. Prints the
import cycles (strongly connected components with more than one member) at four levels:

- file: one node per module (``pocfl.chain.reverts``);
- subpackage: one node per directory (``pocfl.chain``, ``pocfl`` for pocfl's top-level modules);
- package: one node per top-level package (``pocfl``, ``aggregator``, ``trainer_client``, ``zk``);
- layer units: one node per unit of pyproject's layers contract (:func:`layer_unit`): ``pocfl core``,
  ``pocfl.cli``, ``pocfl.audit``, ``pocfl demos`` (``pocfl.demo``), ``aggregator decision``,
  ``aggregator shell`` (:data:`AGGREGATOR_SHELL`), ``trainer_client``, ``zk``. The target is no cycle here; with
  ``--edges`` the whole unit graph is printed.

What is left: no cycle at file level or among the layer units. The subpackage level has one, ``pocfl`` <->
``pocfl.chain``, ``contracts``, ``ml``, ``rounds``, ``store``, ``updates`` (plus ``aggregator``, ``pocfl.audit``,
``trainer_client`` and ``zk`` while the demos are top-level modules of pocfl), because the node ``pocfl`` merges
pocfl's top-level modules, which are both the base the subpackages import (``errors``, ``fsutil``, ``untrusted``,
``waiting``, ``procs``, ``rpc``, ``deployment``) and the composers that import them (``market``, ``manifest``,
``connection``, ``fl_project``); with each top-level module a node of its own, the core has no cycle. The package
level keeps its cycle by construction: the package pocfl holds both the core and the applications (CLI, audit,
demos) that import aggregator, trainer_client and zk.

With ``--sizes`` it also prints the largest functions and classes (lines, decorators excluded) and the
total line count of the four packages.

    PYTHONPATH=. .venv/bin/python scripts/import_graph.py [--sizes] [--top N] [--edges]

Exit status 0 always (this is a measuring tool; the enforced rules live in pyproject's
``[tool.importlinter]``).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pocfl", "aggregator", "trainer_client", "zk")

AGGREGATOR_SHELL = (
    "aggregator.node",
    "aggregator.flower_server",
    "aggregator.round_inputs",
    "aggregator.node_context",
    "aggregator.node_records",
    "aggregator.preparing",
    "aggregator.proving",
    "aggregator.posting",
    "aggregator.round_report",
    "aggregator.setup",
)
"""The aggregator's I/O shell: the modules pyproject's layers contract places with the applications."""
"""The modules of aggregator that do I/O (pyproject's layers contract puts them with the applications)."""

POCFL_APPLICATIONS = {"cli": "pocfl.cli", "audit": "pocfl.audit", "demo": "pocfl demos"}
"""pocfl's children that are not core, by name (``demo`` covers a module and a package alike), and their unit."""


def _modules() -> dict[str, Path]:
    """Map every module name of the four packages to its file."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imported(name: str, tree: ast.AST, modules: dict[str, Path]) -> Iterator[str]:
    """Yield the project modules that module `name` imports (anywhere in its body)."""
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, modules)
                if target:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _owner(base, modules)
                if target:
                    yield target


def _owner(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that `dotted` names or sits in, or None for third-party imports."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def build_graph() -> dict[str, set[str]]:
    """The file-level import graph: module -> the project modules it imports (self-edges dropped)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {t for t in _imported(name, tree, modules) if t != name}
    return graph


def collapse(graph: dict[str, set[str]], key: dict[str, str]) -> dict[str, set[str]]:
    """The graph with nodes merged by `key` (module -> group); edges inside a group are dropped."""
    out: dict[str, set[str]] = {key[n]: set() for n in graph}
    for src, targets in graph.items():
        for dst in targets:
            if key[src] != key[dst]:
                out[key[src]].add(key[dst])
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return sorted(result)


def _subpackage(name: str, graph_modules: dict[str, Path]) -> str:
    return name if _is_package(name, graph_modules) else name.rpartition(".")[0] or name


def layer_unit(name: str) -> str:
    """The layer unit of module `name` (the units of pyproject's layers contract; applications split by package)."""
    top, _, rest = name.partition(".")
    if top == "pocfl":
        return POCFL_APPLICATIONS.get(rest.partition(".")[0], "pocfl core")
    if top == "aggregator":
        shell = any(name == m or name.startswith(m + ".") for m in AGGREGATOR_SHELL)
        return "aggregator shell" if shell else "aggregator decision"
    return top


def _sizes(modules: dict[str, Path]) -> tuple[list[tuple[int, str]], list[tuple[int, str]], int]:
    functions: list[tuple[int, str]] = []
    classes: list[tuple[int, str]] = []
    total = 0
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        total += len(text.splitlines())
        tree = ast.parse(text)
        for node, qual in _definitions(tree.body, name):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            (classes if isinstance(node, ast.ClassDef) else functions).append((lines, qual))
    return sorted(functions, reverse=True), sorted(classes, reverse=True), total


def _definitions(body: Iterable[ast.stmt], prefix: str) -> Iterator[tuple[ast.stmt, str]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qual = f"{prefix}.{node.name}"
            yield node, qual
            yield from _definitions(node.body, qual)


def _print_cycles(title: str, found: list[list[str]], graph: dict[str, set[str]], edges: bool) -> None:
    print(f"{title}: {len(found)} cycle(s)")
    for component in found:
        print("  " + " <-> ".join(component))
        if edges:
            members = set(component)
            for src in component:
                for dst in sorted(graph[src] & members):
                    print(f"      {src} -> {dst}")


def main() -> None:
    """Print the cycles at file, subpackage, package and layer-unit level (and the sizes with --sizes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", action="store_true", help="also print the largest functions/classes and lines")
    parser.add_argument("--top", type=int, default=10, help="how many of the largest functions and classes")
    parser.add_argument("--edges", action="store_true", help="print the import edges inside each cycle")
    args = parser.parse_args()

    modules = _modules()
    graph = build_graph()
    sub = collapse(graph, {n: _subpackage(n, modules) for n in graph})
    top = collapse(graph, {n: n.split(".")[0] for n in graph})
    _print_cycles("file level", cycles(graph), graph, args.edges)
    _print_cycles("subpackage level", cycles(sub), sub, args.edges)
    _print_cycles("package level", cycles(top), top, args.edges)
    units = collapse(graph, {n: layer_unit(n) for n in graph})
    _print_cycles("layer units", cycles(units), units, args.edges)
    if args.edges:
        for src in sorted(units):
            print(f"      {src} -> {', '.join(sorted(units[src])) or '(nothing)'}")

    if args.sizes:
        functions, classes, total = _sizes(modules)
        print(f"largest functions (lines), {len(functions)} in all, {sum(1 for n, _ in functions if n > 80)} over 80:")
        for lines, qual in functions[: args.top]:
            print(f"  {lines:5d}  {qual}")
        print(f"largest classes (lines), {len(classes)} in all, {sum(1 for n, _ in classes if n > 400)} over 400:")
        for lines, qual in classes[: args.top]:
            print(f"  {lines:5d}  {qual}")
        print(f"total lines ({', '.join(PACKAGES)}; {len(modules)} files): {total}")


if __name__ == "__main__":
    main()
