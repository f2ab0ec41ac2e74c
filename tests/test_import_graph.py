"""The import graph of qconvert and the in-repo plugins: layers that import one way.

Read from the source with ``ast`` (nothing is imported, so the test takes well under a second).
Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import
hides a circle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "qconvert", *sorted(p for p in (ROOT / "plugins").glob("*/qconvert_*") if (p / "__init__.py").is_file())]

#: Circles another change is removing; each entry names the modules and is deleted with the circle.
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = {name: path for package in PACKAGES for name, path in _modules(package).items()}


def _imported(name: str, path: Path) -> set[str]:
    """The modules of MODULES that ``name`` imports (``from pkg import sub`` is an import of ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    out = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root, first in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(first)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _describe(component: set[str]) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(GRAPH[m] & component))}" for m in sorted(component))


def test_the_graph_is_read() -> None:
    # guards the test itself: a parser that found nothing would pass everything below
    assert "qconvert.pipeline" in GRAPH and "qconvert.core.quantize" in GRAPH["qconvert.pipeline"]
    assert "qconvert_tidl.intsim" in GRAPH["qconvert_tidl.intsim_compile"]


def test_no_import_circles() -> None:
    circles = _circles(GRAPH)
    assert not circles, "import circles:\n" + "\n".join(_describe(c) for c in circles)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


@pytest.mark.parametrize("lower, upper", [("qconvert.core", "qconvert.targets")])
def test_a_lower_layer_never_imports_a_higher_one(lower: str, upper: str) -> None:
    bad = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m == lower or m.startswith(lower + ".")
                 for t in targets if t == upper or t.startswith(upper + "."))
    assert not bad, f"{lower} imports {upper}: " + ", ".join(bad)


def test_plugins_import_only_the_public_plugin_api() -> None:
    """In-repo plugins import from qconvert only ``qconvert.targets``, as an out-of-tree plugin must."""
    bad = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("qconvert_")
                 for t in targets if (t == "qconvert" or t.startswith("qconvert.")) and t != "qconvert.targets")
    assert not bad, "plugins import qconvert internals: " + ", ".join(bad)
