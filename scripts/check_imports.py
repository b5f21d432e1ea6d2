#!/usr/bin/env python3
"""Fail on an import cycle between iacrun's modules, or on an import across a layer it may not
cross. Standard library only; scripts/check runs it before mypy.

    python scripts/check_imports.py [ROOT]     one line per problem, exit status 1 if any

Every import statement counts: at the top of a module, inside a function, and under
`if TYPE_CHECKING:` (a cycle that only a deferred import hides is still a knot to untie).
`from package import name` is an import of the submodule `package.name` when there is one.
An import of `a.b.c` is an edge to `a.b.c` only, not to the packages above it: a package's
`__init__` that re-exports its submodules does not make every submodule part of a cycle.

The rules are data, below, each with the reason ARCHITECTURE.md cites.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

#: folder at the repository root → the package it is installed as (see pyproject.toml)
PACKAGES = {
    "orchestrator": "iacrun.orchestrator",
    "stacks": "iacrun.stacks",
    "cli": "iacrun.cli",
    "server": "iacrun.server",
    "client": "iacrun.client",
}


@dataclass(frozen=True)
class Rule:
    """Modules named `importer`, or under it, may not import what `forbidden` names (a module or
    anything under it), except what `allowed` names; modules in `exempt` are not bound."""

    importer: str
    forbidden: tuple[str, ...]
    reason: str
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


def _orch(*names: str) -> tuple[str, ...]:
    return tuple(f"iacrun.orchestrator.{name}" for name in names)


RULES = (
    Rule(
        "iacrun.stacks",
        ("iacrun.orchestrator", "iacrun.cli"),
        allowed=("iacrun.orchestrator.errors", "iacrun.orchestrator.runner"),
        reason="stacks is a layer below the orchestrator: it knows its own spec, the error tree "
        "and the runner, nothing of runs, offers or backends",
    ),
    Rule(
        "iacrun",
        ("pulumi.automation",),
        exempt=("iacrun.stacks.engine",),
        reason="one module drives Pulumi: stacks/engine.py",
    ),
    Rule(
        "iacrun",
        ("websockets",),
        exempt=("iacrun.client.ports",),
        reason="one module speaks the WebSocket client (client/ports.py), imported only when a "
        "command forwards a port; the server's side is Starlette's",
    ),
    Rule(
        "iacrun.orchestrator",
        ("iacrun.cli", "iacrun.server", "iacrun.client"),
        reason="the CLI, the server and the client are built on the orchestrator, never the "
        "reverse",
    ),
    Rule(
        "iacrun.stacks",
        ("iacrun.server", "iacrun.client"),
        reason="the server and the client are built on the orchestrator, never the reverse",
    ),
    Rule(
        "iacrun.server",
        ("iacrun.cli", "iacrun.client"),
        reason="the server serves the orchestrator; the CLI and the client are its callers",
    ),
    Rule(
        "iacrun.cli",
        ("iacrun.server",),
        allowed=("iacrun.server.schema", "iacrun.server.main", "iacrun.server.config"),
        reason="the CLI reaches a server through iacrun.client; of the server it knows the API's "
        "shapes and, for `iacrun server`, the function that starts it",
    ),
    Rule(
        "iacrun.client",
        ("iacrun.server", "iacrun.cli"),
        allowed=("iacrun.server.schema",),
        reason="the client speaks HTTP to a server: it shares the orchestrator's models, the "
        "error tree and the API's shapes (server/schema.py), never the server's code",
    ),
    Rule(
        "iacrun.orchestrator.models",
        _orch("offers", "host", "backends", "registry", "api", "supervisor"),
        reason="models are plain data that every other room reads",
    ),
    Rule(
        "iacrun.orchestrator.host",
        _orch("backends", "api", "supervisor", "registry"),
        reason="a host is reached without knowing which backend made it or which run it serves",
    ),
    Rule(
        "iacrun.orchestrator.offers",
        _orch("host", "backends", "api", "supervisor", "registry"),
        reason="planning is pure: offers are priced and matched without a machine, a backend's "
        "code or a record (backends hand their offers in through the OfferSource protocol)",
    ),
    Rule(
        "iacrun.orchestrator.backends",
        _orch("api", "supervisor"),
        reason="backends serve the run's state machine; they never drive it",
    ),
    Rule(
        "iacrun.orchestrator.runner.runner",
        ("iacrun",),
        reason="the runner is one stdlib-only file shipped to hosts and run there alone",
    ),
)

#: folder → how many modules (.py files) may sit directly in it
MAX_MODULES = {"orchestrator": 8}
MAX_MODULES_REASON = "a newcomer sees the rooms at once; the rest lives in named subpackages"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # relative to the root

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


@dataclass(frozen=True)
class Import:
    importer: Module
    target: str  # a project module when it names one; else the dotted name as written
    line: int
    spelled: str  # as written: `from a import b` is `a.b`, whether b is a module or not


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def find_modules(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts[1:])
            if parts and parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            modules[name] = Module(name, rel)
    return modules


def _resolve(base: str, name: str, modules: dict[str, Module]) -> str:
    full = f"{base}.{name}"
    if full in modules:  # from package import submodule
        return full
    if base in modules:  # from module import name
        return base
    return full  # outside the project the name may be a submodule: `from pulumi import automation`


def imports_of(module: Module, root: Path, modules: dict[str, Module]) -> Iterator[Import]:
    tree = ast.parse((root / module.path).read_text(), str(module.path))
    statements = (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
    for node in sorted(statements, key=lambda n: n.lineno):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name.split(".")
                package = package if module.is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                if alias.name == "*":
                    yield Import(module, base, node.lineno, base)
                else:
                    target = _resolve(base, alias.name, modules)
                    yield Import(module, target, node.lineno, f"{base}.{alias.name}")


def layer_problems(imports: list[Import]) -> list[str]:
    problems: dict[tuple[Path, int, Rule], str] = {}  # one line per statement and rule
    for imp in imports:
        for rule in RULES:
            if not _under(imp.importer.name, rule.importer):
                continue
            if any(_under(imp.importer.name, e) for e in rule.exempt):
                continue
            for name in dict.fromkeys((imp.target, imp.spelled)):
                if any(_under(name, f) for f in rule.forbidden) and not any(
                    _under(name, a) for a in rule.allowed
                ):
                    problems.setdefault(
                        (imp.importer.path, imp.line, rule),
                        f"{imp.importer.path}:{imp.line}: {imp.importer.name} imports {name}"
                        f" (forbidden: {rule.reason})",
                    )
    return list(problems.values())


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_cycle(graph: dict[str, dict[str, Import]], members: list[str]) -> list[str]:
    """The shortest way from the component's first module back to itself, inside it."""
    first, inside = members[0], set(members)
    paths = {first: [first]}
    queue = [first]
    for node in queue:
        for child in sorted(graph[node]):
            if child == first:
                return [*paths[node], first]
            if child in inside and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError("a strongly connected component has a cycle")


def cycle_problems(imports: list[Import], modules: dict[str, Module]) -> list[str]:
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.importer.name:
            graph[imp.importer.name].setdefault(imp.target, imp)
    problems = []
    for members in _strongly_connected(graph):
        if len(members) < 2:
            continue
        cycle = _shortest_cycle(graph, members)
        steps = " -> ".join(
            f"{a} ({graph[a][b].importer.path}:{graph[a][b].line})" for a, b in pairwise(cycle)
        )
        knot = "" if len(members) == len(cycle) - 1 else f"; knot: {', '.join(members)}"
        problems.append(f"import cycle: {steps} -> {cycle[0]}{knot}")
    return problems


def size_problems(root: Path) -> list[str]:
    problems = []
    for folder, most in MAX_MODULES.items():
        count = len(list((root / folder).glob("*.py")))
        if count > most:
            problems.append(
                f"{folder}/: {count} modules directly under it, at most {most}"
                f" ({MAX_MODULES_REASON})"
            )
    return problems


def check(root: Path) -> list[str]:
    """Every problem in the tree at `root`, one line each; empty when it keeps the rules."""
    modules = find_modules(root)
    imports = [imp for m in modules.values() for imp in imports_of(m, root, modules)]
    return [*cycle_problems(imports, modules), *layer_problems(imports), *size_problems(root)]


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
