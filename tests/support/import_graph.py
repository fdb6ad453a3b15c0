"""The project's import graph, read with `ast` (nothing is imported), and the house rules checked on it.

Rules (docs/design.md, "Layout"): imports point down only — no cycle between project modules; nothing
under tasks/ or validation/ imports flows; Prefect only in stage modules (a module with a `@stage` or
`@task` function), the stage helper and flows; torch nowhere on `medsafe score`'s path.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("flows", "tasks", "validation")
STAGE_HELPER = "tasks.core.stage"
HEAVY = ("torch", "transformers", "peft", "trl")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int
    lazy: bool  # inside a function: runs only when that function is called

    def __str__(self) -> str:
        where = " (inside a function)" if self.lazy else ""
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}{where}"


def module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every project module by dotted name (a package by its __init__.py)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, lazy: bool):
    """(import node, lazy) pairs, skipping `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield from _walk(sub, lazy)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, lazy
        inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, inner)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """What one module imports: project modules resolved to the deepest existing one, others by top name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, lazy in _walk(tree, False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            targets = [t if t in modules else base for t in targets]
        for target in dict.fromkeys(targets):
            resolved = _resolve(target, modules)
            found.append(Import(name, resolved, path, node.lineno, lazy))
    return found


def _resolve(target: str, modules: dict[str, Path]) -> str:
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return parts[0]


def is_stage_module(path: Path) -> bool:
    """A module that defines a `@stage` or `@task` function (a thin Prefect wrapper)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                label = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if label in ("stage", "task"):
                    return True
    return False


class ImportGraph:
    def __init__(self, root: Path, packages: tuple[str, ...] = PACKAGES) -> None:
        self.root = root
        self.modules = module_files(root, packages)
        self.imports = [
            imp for name, path in self.modules.items() for imp in imports_of(name, path, self.modules)
        ]

    def edges(self, lazy: bool = True) -> dict[str, list[Import]]:
        graph: dict[str, list[Import]] = {name: [] for name in self.modules}
        for imp in self.imports:
            if imp.imported in self.modules and imp.imported != imp.importer and (lazy or not imp.lazy):
                graph[imp.importer].append(imp)
        return graph

    def cycles(self) -> list[list[Import]]:
        """One closed path of imports per strongly connected group of modules (Tarjan)."""
        graph = self.edges()
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        groups: list[list[str]] = []

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            for edge in graph[node]:
                nxt = edge.imported
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)

        for node in sorted(graph):
            if node not in index:
                visit(node)
        return [self._closed_path(sorted(group), graph) for group in groups]

    @staticmethod
    def _closed_path(group: list[str], graph: dict[str, list[Import]]) -> list[Import]:
        members = set(group)
        start = group[0]
        path: list[Import] = []
        seen = {start}
        node = start
        while True:
            edge = next(
                e
                for e in graph[node]
                if e.imported in members and (e.imported == start or e.imported not in seen)
            )
            path.append(edge)
            if edge.imported == start:
                return path
            seen.add(edge.imported)
            node = edge.imported

    def upward(self) -> list[Import]:
        """tasks/ or validation/ importing flows."""
        return [
            imp
            for imp in self.imports
            if imp.importer.split(".")[0] in ("tasks", "validation") and imp.imported.split(".")[0] == "flows"
        ]

    def prefect_outside_stages(self) -> list[Import]:
        return [
            imp
            for imp in self.imports
            if imp.imported == "prefect"
            and imp.importer.split(".")[0] in ("tasks", "validation")
            and imp.importer != STAGE_HELPER
            and not is_stage_module(self.modules[imp.importer])
        ]

    def heavy_on_path(self, entry: str, heavy: tuple[str, ...] = HEAVY) -> list[list[Import]]:
        """Chains of import-time imports from `entry` to a heavy library (lazy imports are not followed)."""
        graph = self.edges(lazy=False)
        chains: list[list[Import]] = []
        seen = {entry}
        frontier: list[tuple[str, list[Import]]] = [(entry, [])]
        while frontier:
            node, chain = frontier.pop(0)
            for imp in self.imports:
                if imp.importer != node or imp.lazy:
                    continue
                if imp.imported in heavy:
                    chains.append([*chain, imp])
            for edge in graph[node]:
                if edge.imported not in seen:
                    seen.add(edge.imported)
                    frontier.append((edge.imported, [*chain, edge]))
        return chains


def violations(root: Path, score_entries: tuple[str, ...] = ("tasks.reward.score",)) -> list[str]:
    """Every broken rule, one readable line each (empty when the tree is clean)."""
    graph = ImportGraph(root)
    problems = ["import cycle: " + " -> ".join(str(edge) for edge in cycle) for cycle in graph.cycles()]
    problems += [f"imports point down only, but {imp}" for imp in graph.upward()]
    problems += [f"Prefect outside a stage module: {imp}" for imp in graph.prefect_outside_stages()]
    for entry in score_entries:
        if entry in graph.modules:
            for chain in graph.heavy_on_path(entry):
                problems.append(
                    f"{chain[-1].imported} on `medsafe score`'s path: " + " -> ".join(map(str, chain))
                )
    return problems
