"""salseg.bench imports flow one way (DESIGN: no import cycles), counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import salseg.bench

PKG = Path(salseg.bench.__file__).parent


def bench_imports(path: Path) -> set[str]:
    """Names of the salseg.bench modules that ``path`` imports anywhere (top level or inside a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "salseg.bench":
                out.update(a.name for a in node.names)
            elif node.module.startswith("salseg.bench."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("salseg.bench."))
    return out - {path.stem}


def test_no_import_cycle_in_bench():
    graph = {p.stem: bench_imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(node, stack):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])
    # the report side depends on the collection side, never the reverse
    assert "report" in graph["grid"] and "collect" in graph["report"] and "tables" in graph["report"]
    assert not graph["collect"] & {"grid", "report", "tables", "protocols"}
