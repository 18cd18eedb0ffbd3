"""The layout's import rules and the absence of import cycles, read from the source (no module is
imported).

Every folder's docstring states what it may import; this test is where those sentences are
enforced. Lazy imports inside functions count like any other; imports under ``if TYPE_CHECKING:``
count for the rules but not for cycles (they never run)."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"copur": REPO / "services" / "copur", "copur_client": REPO / "clients" / "copur_client"}
WIRE = ("copur_client.wire", "copur_client.serde", "copur_client.v1", "copur_client.oip")
ROLES = ("copur.roles.party", "copur.roles.fusion", "copur.roles.adversary")

# Layer -> the prefixes it may import (third-party packages aside); "=copur" is the root package
# alone (its
# __version__), not everything under it.
ALLOWED: dict[str, tuple[str, ...]] = {
    "copur_client": ("copur_client",),
    "copur.errors": (),
    "copur.science": ("=copur", "copur.errors", "copur.science", "copur_client.wire"),
    "copur.transport": ("copur.errors", "copur.transport", *WIRE),
    # a role: its own package only (filled in per role below), never another role
    "copur.roles": ("=copur", "copur.errors", "copur.science", "copur.transport", *WIRE),
    "copur.operations": (
        "=copur",
        "copur.errors",
        "copur.science",
        "copur.transport",
        "copur.roles",
        "copur.operations",
        "copur_client",
    ),
    "copur.evaluation": (
        "=copur",
        "copur.errors",
        "copur.science",
        "copur.transport",
        "copur.roles",
        "copur.operations",
        "copur.evaluation",
        "copur_client",
    ),
    "copur.cli": ("copur", "copur_client"),
    "copur.__main__": ("copur.cli",),
    "copur": (),
}
SERVER_ONLY = (
    "torch",
    "fastapi",
    "uvicorn",
    "typer",
    "safetensors",
    "sklearn",
    "matplotlib",
    "pandas",
)
"""Third-party packages the client package must not import (its pyproject does not install them)."""


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    type_checking: bool


def _module_name(path: Path) -> str:
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    found = {}
    for root in ROOTS.values():
        for path in root.rglob("*.py"):
            if "_pb2" not in path.name:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _resolve(name: str) -> str:
    """The project module ``name`` refers to: itself, else its longest prefix that is a module."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, source: str | None = None) -> list[Import]:
    """Every import statement of ``module`` (project and third-party), resolved to module names;
    ``source`` replaces the module's file (for the checker's own tests)."""
    path = MODULES.get(module, Path(module.replace(".", "/") + ".py"))
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    guarded = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names] if base in MODULES else [base]
            names = [n if n in MODULES else base for n in names]
        for name in names:
            target = _resolve(name) or name
            found.append(Import(module, target, node.lineno, node.lineno in guarded))
    return found


def _layer(module: str) -> str:
    if module.startswith(ROLES):
        return "copur.roles"
    return max((key for key in ALLOWED if module == key or module.startswith(key + ".")), key=len)


def _allowed(module: str) -> tuple[str, ...]:
    allowed = ALLOWED[_layer(module)]
    own = next((role for role in ROLES if module == role or module.startswith(role + ".")), None)
    return allowed + ((own,) if own else ())


def _within(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(
        target == p.removeprefix("=")
        if p.startswith("=")
        else target == p or target.startswith(p + ".")
        for p in prefixes
    )


def test_every_module_belongs_to_a_layer() -> None:
    strays = [m for m in MODULES if not any(m == k or m.startswith(k + ".") for k in ALLOWED)]
    assert not strays, f"modules outside every layer of the layout: {strays}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layout_rules(module: str) -> None:
    allowed = _allowed(module)
    broken = [
        f"{module}:{imp.line} imports {imp.target}"
        for imp in imports_of(module)
        if imp.target.split(".")[0] in ROOTS and not _within(imp.target, allowed)
    ]
    assert not broken, f"{_layer(module)} may import only {allowed}: " + "; ".join(broken)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("copur_client")))
def test_the_client_imports_no_server_dependency(module: str) -> None:
    heavy = [
        f"{module}:{imp.line} imports {imp.target}"
        for imp in imports_of(module)
        if imp.target.split(".")[0] in SERVER_ONLY
    ]
    assert not heavy, "; ".join(heavy)


def _graph() -> dict[str, set[str]]:
    return {
        m: {
            i.target
            for i in imports_of(m)
            if i.target in MODULES and i.target != m and not i.type_checking
        }
        for m in MODULES
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_there_is_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("module", "source", "forbidden"),
    [
        ("copur.science.planted", "from copur.transport.topology import Topology", True),
        ("copur.science.planted", "def f():\n    import copur.roles.fusion.handler", True),
        ("copur.science.planted", "from copur import __version__", False),
        ("copur.science.planted", "from copur.evaluation import suite", True),
        ("copur.roles.party.planted", "from copur.roles.fusion import handler", True),
        ("copur.roles.party.planted", "from copur.roles.party import core", False),
        ("copur.transport.planted", "from copur_client.serde import array_to_proto", False),
        ("copur.transport.planted", "from copur_client.http import FusionClient", True),
        ("copur.roles.fusion.planted", "from copur_client.oip import grpc_predict_v2_pb2", False),
        ("copur.science.planted", "from copur_client.oip import grpc_predict_v2_pb2", True),
        ("copur_client.planted", "from copur.errors import CopurError", True),
        ("copur.operations.planted", "from copur.evaluation.suite import run_suite", True),
    ],
)
def test_the_rule_checker_tells_allowed_from_forbidden(
    module: str, source: str, forbidden: bool
) -> None:
    targets = [i.target for i in imports_of(module, source) if i.target.split(".")[0] in ROOTS]
    assert targets and any(not _within(t, _allowed(module)) for t in targets) is forbidden


if __name__ == "__main__":  # pragma: no cover - a listing for people: python tests/test_layout.py
    for name in sorted(MODULES):
        print(
            name,
            sorted({i.target for i in imports_of(name) if i.target.split(".")[0] in ROOTS}),
            file=sys.stdout,
        )
