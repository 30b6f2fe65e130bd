"""Dependencies point one way: no import cycle among the provider's modules.

Counted: every import a module makes when it is imported (top level, and inside
``try``/``if`` blocks there), except those under ``if TYPE_CHECKING:``, which never run.
Imports inside functions are made on first use and are not counted: they are how
runtime code defers heavy modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_provider_vikingdb"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_at_import_time(tree: ast.Module, name: str) -> set[str]:
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(name.split(".")[: -node.level] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                if isinstance(node, (ast.If, ast.Try)) and hasattr(node, field):
                    children = getattr(node, field)
                    if field == "handlers":
                        for handler in children:
                            visit(handler.body)
                    else:
                        visit(children)

    visit(tree.body)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = imports_at_import_time(ast.parse(path.read_text()), name)
        edges[name] = {m for m in imported if m in modules and m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_no_import_cycle_in_the_package():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_the_provider_s_real_edges():
    edges = graph()
    assert "airflow_provider_vikingdb.transport" in edges["airflow_provider_vikingdb.hooks.vikingdb"]
    assert "airflow_provider_vikingdb.index_sync" in edges["airflow_provider_vikingdb.triggers.vikingdb"]
    # the bottom layers import nothing above them
    assert not {m for m in edges["airflow_provider_vikingdb.transport"] if ".hooks" in m or ".operators" in m}
