"""The import graph of salseg/ and salseg_cli/: no cycle between modules (inside a package too, also through an
import inside a function), no import from a lower layer to a higher one (LAYERS below, docs/architecture.md).

Every ``import``/``from ... import`` anywhere in a file counts (top level, in functions, relative or absolute), and so
does ``importlib.import_module`` with a literal name.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP = ("salseg", "salseg_cli")

# Units, low -> high: a unit imports only units of lower layers (never one of its own layer, never a higher one).
# A unit is a package of salseg/ or a module directly in salseg/; salseg_cli is one unit on top.
LAYERS = [
    ["salseg", "salseg.errors"],                                # salseg: the package itself (__version__)
    ["salseg.fileio", "salseg.safepath", "salseg.lock", "salseg.protocol", "salseg.parallel", "salseg.results",
     "salseg.checks"],
    ["salseg.dataset"],
    ["salseg.convert", "salseg.evaluate", "salseg.plans", "salseg.nets"],
    ["salseg.synthetic", "salseg.stats", "salseg.preprocess"],
    ["salseg.plan", "salseg.synthetic_kinds"],
    ["salseg.run"],                                             # the trained-model contract
    ["salseg.infer"],
    ["salseg.train"],
    ["salseg.bench"],
    ["salseg.quickstart"],
    ["salseg_cli"],
]



def find_modules(root: Path, tops=TOP) -> dict[str, Path]:
    mods = {}
    for top in tops:
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _known(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imported(name: str, path: Path, mods: dict) -> set[str]:
    """The modules of ``mods`` that module ``name`` (file ``path``) imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            targets = [str(node.args[0].value)]
        found.update(t for t in map(lambda t: _known(t, mods), targets) if t and t != name)
    return found


def import_graph(root: Path = REPO, tops=TOP) -> dict[str, set[str]]:
    mods = find_modules(root, tops)
    return {name: imported(name, path, mods) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.add(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(graph.get(w, ())))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def unit_of(module: str) -> str:
    parts = module.split(".")
    return "salseg_cli" if parts[0] == "salseg_cli" else ".".join(parts[:2])


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    bad = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            ua, ub = unit_of(a), unit_of(b)
            if ua == ub:
                continue
            if ua not in rank or ub not in rank:
                bad.append(f"{a} -> {b}: {ua if ua not in rank else ub} has no layer in LAYERS")
            elif rank[ub] >= rank[ua]:
                bad.append(f"{a} -> {b}: layer {rank[ub]} ({ub}) is not below layer {rank[ua]} ({ua})")
    return bad


def package_graph(graph: dict[str, set[str]], root: Path = REPO) -> dict[str, set[str]]:
    """Edges between the packages below the two top ones (``salseg.nets``, ``salseg.nets.modules``, ...): a package
    stands for its ``__init__`` and the modules directly in it, except that its ``__init__`` may import its own
    sub-packages; the top packages are ordered by LAYERS instead."""
    packages = {m for m in graph if (root / m.replace(".", "/") / "__init__.py").is_file()} - set(TOP)

    def pkg(m):
        return m if m in packages or m.rpartition(".")[0] not in packages else m.rpartition(".")[0]

    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        for b in targets:
            if a in packages and b.startswith(a + "."):
                continue  # a package's __init__ gathering its own sub-packages (registration, re-exports)
            if pkg(a) != pkg(b):
                out.setdefault(pkg(a), set()).add(pkg(b))
    return out


# ---------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def repo_graph() -> dict[str, set[str]]:
    return import_graph()


def test_no_module_cycle():
    found = cycles(repo_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_no_package_cycle():
    found = cycles(package_graph(repo_graph()))
    assert not found, "package cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_imports_run_down_the_layers():
    bad = upward_imports(repo_graph())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in find_modules(REPO)}
    declared = {u for layer in LAYERS for u in layer}
    assert units <= declared, f"give these a layer in LAYERS: {sorted(units - declared)}"


def test_the_walk_sees_function_and_relative_imports(tmp_path):
    """The checks themselves: a cycle closed by a relative import inside a function, and an upward import."""
    pkg = tmp_path / "salseg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from . import a\n")
    (pkg / "low" / "a.py").write_text("import salseg.low.b\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from .a import g\n    from ..high import h\n")
    (pkg / "high.py").write_text("from salseg.low import a\nimportlib.import_module('salseg.low.b')\n")
    graph = import_graph(tmp_path, ("salseg",))
    assert graph["salseg.low.b"] == {"salseg.low.a", "salseg.high"}
    assert graph["salseg.high"] == {"salseg.low.a", "salseg.low.b"}
    assert cycles(graph) == [frozenset({"salseg.low.a", "salseg.low.b", "salseg.high"})]
    assert cycles(package_graph(graph, tmp_path)) == [frozenset({"salseg.low", "salseg.high"})]
    assert upward_imports(graph, [["salseg"], ["salseg.low"], ["salseg.high"]]) == [
        "salseg.low.b -> salseg.high: layer 2 (salseg.high) is not below layer 1 (salseg.low)"]


def test_a_package_cycle_without_a_module_cycle(tmp_path):
    """salseg.p.a imports salseg.p.q.c, which imports salseg.p.b: no module cycle, but p <-> p.q."""
    for name, text in {"__init__": "", "p/__init__": "", "p/a": "from salseg.p.q import c\n", "p/b": "",
                       "p/q/__init__": "", "p/q/c": "from ..b import x\n"}.items():
        (tmp_path / "salseg" / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "salseg" / f"{name}.py").write_text(text)
    graph = import_graph(tmp_path, ("salseg",))
    assert cycles(graph) == []
    assert cycles(package_graph(graph, tmp_path)) == [frozenset({"salseg.p", "salseg.p.q"})]
    (tmp_path / "salseg" / "p" / "a.py").write_text("")
    (tmp_path / "salseg" / "p" / "__init__.py").write_text("import salseg.p.q.c\n")  # the package gathers its child
    assert cycles(package_graph(import_graph(tmp_path, ("salseg",)), tmp_path)) == []
