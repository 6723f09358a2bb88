"""The package's import graph has no circle: lazy imports inside functions count too (a lazy import only
hides a circle until the layering is changed). Lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robustbench_vit"


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its body), by dotted name."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, leaving out a package and its own
    submodules (an ``__init__`` re-exporting its parts is not a circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            nested = all(
                any(a.startswith(b + ".") or b.startswith(a + ".") for b in comp if b != a) for a in comp
            )
            if len(comp) > 1 and not nested:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle():
    assert circles(import_graph()) == []


def test_the_check_finds_a_circle_when_one_is_added(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a  # a lazy import is still an edge\n")
    assert circles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_suites_never_import_figures_or_the_runner():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("robustbench_vit.suites"):
            bad = {
                t
                for t in targets
                if t.split(".")[1] in ("plots", "plots_analysis", "figures_base", "runner", "cli", "report")
            }
            assert not bad, f"{module} imports {bad}"


#: the layers, lowest first: a module may import its own layer and the ones below, never one above
LAYERS = [
    {
        "",
        "errors",
        "registry",
        "device",
        "cpu_allocator",
    },  # "": the package root (version, lazy public names)
    # content identity hashes files with the data layer's content index (installed code, cached weights)
    {
        "data",
        "subsets",
        "identity",
        "fingerprint",
        "replaced_code",
        "library_patches",
        "installed_code",
        "code_manifest",
    },
    {"models"},
    {"perturbations", "attacks"},
    {"metrics", "storage"},
    {"suites"},
    {"engine"},
    {"results", "published"},
    {"sweeps"},
    {"api", "benchmarking", "reproduce"},
    {"cli"},
]


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if part in names)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs if _layer(b) > _layer(a))


def test_lower_layers_never_import_higher_ones():
    graph = import_graph()
    assert {m.split(".")[1] for m in graph if "." in m} <= set().union(*LAYERS), (
        "a new subpackage needs a layer"
    )
    assert layering_violations(graph) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {
        "robustbench_vit.data.cache": {"robustbench_vit.engine.runner"},
        "robustbench_vit.engine.runner": set(),
    }
    assert layering_violations(graph) == ["robustbench_vit.data.cache -> robustbench_vit.engine.runner"]
