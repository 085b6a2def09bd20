"""The package's imports flow one way: checked against the layer table of docs/ARCHITECTURE.md.

The table below is the one place the allowed edges are written; ``docs/ARCHITECTURE.md`` shows
it verbatim (a test checks the two agree). A *component* is a top-level module or subpackage of
``vvuq_twin``. A component may import itself and any component in a lower layer; within a layer
only the arrows listed in ``SAME_LAYER`` are allowed. Every import counts - module level and
function level (a lazy import is still a dependency) - except those under
``if TYPE_CHECKING:``. Within a component, modules must not import each other in a cycle.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "vvuq_twin"

# ---------------------------------------------------------------------------- the layer table
# top (face) to bottom (leaves); "vvuq_twin" is the lazy top-level namespace (twin + inference)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli", "validation_suite_plugin"),
    ("loop",),
    ("testing",),
    ("suite", "report"),
    ("design", "decisions", "risk"),
    ("assimilation", "operations"),
    ("verification", "validation"),
    ("sensitivity", "surrogates", "ensembles", "spaces"),
    ("vvuq_twin",),
    ("inference",),
    ("domain",),
    ("twin",),
    ("_rng", "exceptions", "_version", "_io", "progress"),
)
# allowed arrows inside one layer (importer -> imported)
SAME_LAYER: frozenset[tuple[str, str]] = frozenset({
    ("__main__", "cli"),
    ("design", "decisions"),
    ("decisions", "risk"),
    ("sensitivity", "surrogates"),
    ("sensitivity", "spaces"),
    ("surrogates", "spaces"),
    ("surrogates", "ensembles"),
})
# ---------------------------------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_pkg: bool, modules: set[str]):
    """Yield (imported module, line) for every vvuq_twin import in ``tree`` (not TYPE_CHECKING)."""
    package = module if is_pkg else module.rpartition(".")[0]

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                yield (sub if sub in modules else target), node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    for name, line in visit(tree):
        if name == "vvuq_twin" or name.startswith("vvuq_twin."):
            yield name, line


def module_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, list[tuple[str, int]]]:
    """``{module: [(imported module, line), ...]}`` of vvuq_twin-internal imports.

    ``sources`` maps a dotted module name to (source text, is a package ``__init__``).
    """
    modules = set(sources)
    graph = {}
    for mod, (text, is_pkg) in sources.items():
        graph[mod] = list(_imports(ast.parse(text), mod, is_pkg, modules))
    return graph


def package_sources(pkg_dir: Path = PKG, name: str = "vvuq_twin") -> dict[str, tuple[str, bool]]:
    out = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        parts = (name, *f.relative_to(pkg_dir).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mod = ".".join(parts[:-1] if is_pkg else parts)
        out[mod] = (f.read_text(encoding="utf-8"), is_pkg)
    return out


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vvuq_twin"


def layer_violations(graph, layers=LAYERS, same_layer=SAME_LAYER) -> list[str]:
    """Imports that go upward, sideways without an allowed arrow, or to an unknown component."""
    level = {c: i for i, row in enumerate(layers) for c in row}
    bad = []
    for mod, imports in graph.items():
        src = component(mod)
        for target, line in imports:
            dst = component(target)
            if src == dst:
                continue
            if src not in level or dst not in level:
                unknown = src if src not in level else dst
                bad.append(f"{mod}:{line} imports {target}: component {unknown!r} is not in LAYERS")
            elif level[dst] < level[src] or (level[dst] == level[src] and (src, dst) not in same_layer):
                bad.append(f"{mod}:{line} imports {target} ({src} -> {dst} is not an allowed edge)")
    return sorted(bad)


def internal_cycles(graph) -> list[list[str]]:
    """Import cycles among the modules of one component (Tarjan's strongly connected components)."""
    edges = {m: sorted({t for t, _ in imps if t in graph and component(t) == component(m)
                        and t != m and not m.startswith(t + ".") and not t.startswith(m + ".")})
             for m, imps in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return sorted(out)


# ------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def graph():
    return module_graph(package_sources())


def test_every_component_is_in_the_table(graph):
    present = {component(m) for m in graph}
    named = {c for row in LAYERS for c in row}
    assert present <= named, f"components missing from LAYERS: {sorted(present - named)}"
    assert not named - present, f"LAYERS names components that do not exist: {sorted(named - present)}"


def test_imports_flow_one_way(graph):
    bad = layer_violations(graph)
    assert not bad, "imports against the layer table (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_no_import_cycles_inside_a_component(graph):
    assert internal_cycles(graph) == []


def test_checker_catches_a_planted_upward_import(graph):
    """The same checker flags an upward import planted into the real tree, and a cycle."""
    sources = package_sources()
    planted = dict(sources)
    text, is_pkg = planted["vvuq_twin.twin.priors"]
    planted["vvuq_twin.twin.priors"] = (text + "\n\ndef _f():\n    from ..design import twin\n", is_pkg)
    bad = layer_violations(module_graph(planted))
    assert len(bad) == 1 and bad[0].startswith("vvuq_twin.twin.priors:")
    assert "twin -> design is not an allowed edge" in bad[0]
    # sideways without an arrow (sensitivity and risk are not in one layer, surrogates is)
    planted["vvuq_twin.twin.priors"] = (text, is_pkg)
    text_s, p = sources["vvuq_twin.surrogates.pce"]
    planted["vvuq_twin.surrogates.pce"] = ("from ..sensitivity import spec\n" + text_s, p)
    assert [b for b in layer_violations(module_graph(planted)) if "surrogates -> sensitivity" in b]
    # a TYPE_CHECKING-only import is not a dependency
    planted["vvuq_twin.surrogates.pce"] = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..sensitivity import spec\n"
        + text_s, p)
    assert layer_violations(module_graph(planted)) == []
    # a cycle between two modules of one component
    syn = {"vvuq_twin.report.a": ("def f():\n    from .b import x\n", False),
           "vvuq_twin.report.b": ("from .a import f\n", False)}
    assert internal_cycles(module_graph(syn)) == [["vvuq_twin.report.a", "vvuq_twin.report.b"]]


def test_architecture_doc_shows_the_table():
    """docs/ARCHITECTURE.md shows the same layers and same-layer arrows the test enforces."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", doc, re.S)
    assert block, "docs/ARCHITECTURE.md lacks the <!-- layers:begin/end --> table"
    rows, arrows = [], set()
    for line in block.group(1).splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|([^|]*)\|", line)
        if not m:
            continue
        rows.append((int(m.group(1)), tuple(c.strip(" `") for c in m.group(2).split(",") if c.strip())))
        for a, b in re.findall(r"`?([\w.]+)`?\s*->\s*`?([\w.]+)`?", m.group(3)):
            arrows.add((a, b))
    rows.sort(reverse=True)
    assert tuple(r for _, r in rows) == LAYERS
    assert arrows == set(SAME_LAYER)


def test_outside_users_do_not_import_the_command_line():
    """Case studies and the validation suite use the library, never its CLI face."""
    bad = []
    for d in ("case_studies", "validation_suite"):
        for f in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                         else [])
                bad += [f"{f.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                        if n in ("vvuq_twin.cli", "vvuq_twin.__main__")]
    assert bad == []


# classes allowed to live outside vvuq_twin/exceptions.py (docs/ARCHITECTURE.md says where)
EXCEPTIONS_ELSEWHERE = {
    "vvuq_twin.assimilation.smc": {"ParticleCollapseError"},  # next to the particle engine
    "vvuq_twin.validation_suite_plugin": {"CaseFailure"},  # pytest's report of a failed case
}


def test_exceptions_live_in_exceptions_py():
    """Every error and warning class of the package is defined in vvuq_twin/exceptions.py."""
    import importlib

    import vvuq_twin.exceptions as E

    stray = {}
    for mod, (text, _) in package_sources().items():
        names = {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ClassDef)
                 and re.search(r"(Error|Warning|Exception|Failure)$", n.name)}
        names -= EXCEPTIONS_ELSEWHERE.get(mod, set())
        if mod != "vvuq_twin.exceptions" and names:
            stray[mod] = sorted(names)
    assert stray == {}
    for name in E.__all__:
        assert issubclass(getattr(E, name), Exception | Warning)
    # the old homes still re-export the same classes
    for mod, name in [("vvuq_twin.risk", "RiskInputError"), ("vvuq_twin.sensitivity", "DependentInputsError"),
                      ("vvuq_twin.validation", "ValidationDomainError"), ("vvuq_twin.report", "ReportError"),
                      ("vvuq_twin.verification", "SBCWarning"), ("vvuq_twin.decisions", "InfeasibleDecisionError"),
                      ("vvuq_twin.operations", "LineageError"), ("vvuq_twin.assimilation", "StreamDataError")]:
        assert getattr(importlib.import_module(mod), name) is getattr(E, name), (mod, name)


def test_old_import_paths_still_work():
    from vvuq_twin import domain, spaces
    from vvuq_twin.report import model
    from vvuq_twin.report.report import SUMMARY_FIELDS, Metric
    from vvuq_twin.sensitivity.spec import ParameterSpace
    from vvuq_twin.validation.domain import ValidationDomain

    assert ValidationDomain is domain.ValidationDomain and ParameterSpace is spaces.ParameterSpace
    assert Metric is model.Metric and SUMMARY_FIELDS is model.SUMMARY_FIELDS
