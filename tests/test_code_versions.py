"""rbvit's own code is keyed by versions: each suite's ``version`` (its runs and the artifacts it stores) and
``DECODE_VERSION`` (every decoded-image cache entry and run id). A version is only as good as the habit of
bumping it, so this test holds, for each, a digest of the code it covers (comments, formatting and
docstrings left out) beside the version it was recorded with, and fails when the code changed without a
decision: bump the version if a number can change, then record the new digests with

    python -m tests.test_code_versions --record

A suite's code is its module and every module it imports from the packages that compute its numbers
(suites, perturbations, attacks, metrics, models.attention, models.probes, and data.registry: the 200-class
masks of ImageNet-A/-R), transitively, the model wrapper
the loader and the class mapping every suite computes through (``models/modules.py``, ``data/loader.py``,
``data/labels.py``, ``data/datasets.py``), and the shipped
tables those modules name (``data/_info/shape16.json``: a category's WordNet set is as much a part of
shape bias as its code); the decoder's is ``data/decode.py`` and ``data/preprocessing.py`` (the resize and
crop geometry).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: shipped with the package: at run time a file whose bytes differ from it keys its suite by content
#: (``robustbench_vit/code_manifest.py``: a researcher's local edit)
TABLE = ROOT / "robustbench_vit" / "code_versions.json"
#: the packages (and modules) whose code computes a suite's numbers
COMPUTING = (
    "robustbench_vit.suites.",
    "robustbench_vit.perturbations.",
    "robustbench_vit.attacks.",
    "robustbench_vit.metrics.",
    "robustbench_vit.models.attention",
    "robustbench_vit.models.probes",
    # which classes a benchmark's folder must hold and which outputs it is scored on (ImageNet-A/-R's 200)
    "robustbench_vit.data.registry",
)
#: code every suite computes through, whatever it imports: the model wrapper (the normalisation inside the
#: model, autocast), the loader (uint8 -> [0, 1]) and the mapping of a dataset's classes to a model's outputs
#: (the content identity names each image's class, not the output index it is graded against)
EVERY_SUITE = (
    "robustbench_vit.models.modules",
    "robustbench_vit.data.loader",
    "robustbench_vit.data.labels",
    "robustbench_vit.data.datasets",
)
DECODER = ("robustbench_vit.data.decode", "robustbench_vit.data.preprocessing")
#: shipped data tables a module reads by file name (``resources.files(...) / "_info" / "shape16.json"``)
TABLES = ROOT / "robustbench_vit" / "data" / "_info"


def _tables(tree: ast.AST) -> list[Path]:
    """The shipped tables a module names in a string constant."""
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return sorted(p for p in TABLES.iterdir() if p.name in names)


def _file(module: str) -> Path | None:
    """A module's file; a package's ``__init__.py`` only when it holds code of its own (the corruptions'
    ``OPS`` and ``corrupt``), not when it only re-exports its modules."""
    base = ROOT / Path(*module.split("."))
    path = base.with_suffix(".py")
    if path.is_file():
        return path
    init = base / "__init__.py"
    return init if init.is_file() and _computes(ast.parse(init.read_text())) else None


def _computes(tree: ast.Module) -> bool:
    """Whether a module body holds more than imports, its docstring and ``__all__``."""

    def only_names(node: ast.stmt) -> bool:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        return bool(targets) and all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)

    return not all(only_names(node) for node in tree.body)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _canonical(node: object) -> str:
    """A text of the syntax tree that fields a newer Python adds empty (``type_params=[]``) do not change."""
    if isinstance(node, ast.AST):
        fields = [
            f"{f}={_canonical(v)}"
            for f in node._fields
            if (v := getattr(node, f, None)) is not None and v != []
        ]
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return repr(node)


def _imports(module: str, tree: ast.AST) -> set[str]:
    found = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).rstrip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def code_digest(roots: tuple[str, ...], within: tuple[str, ...]) -> tuple[str, list[str]]:
    """SHA-256 over the canonical syntax trees of ``roots`` and of every module they import (transitively)
    whose name starts with one of ``within``; also the files it covers."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or (path := _file(module)) is None:
            continue
        seen[module] = path
        tree = ast.parse(path.read_text())
        todo += [m for m in _imports(module, tree) if m.startswith(within) and m not in seen]
    h = hashlib.sha256()
    tables: set[Path] = set()
    for module in sorted(seen):
        tree = ast.parse(seen[module].read_text())
        tables.update(_tables(tree))
        h.update(f"{module}\0{_canonical(_without_docstrings(tree))}\n".encode())
    for table in sorted(tables):
        h.update(f"{table.name}\0".encode() + table.read_bytes())
    return h.hexdigest(), sorted(p.relative_to(ROOT).as_posix() for p in [*seen.values(), *tables])


def _entry(version: int, code: str, files: list[str]) -> dict:
    sha = {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in files}
    return {"version": version, "code": code, "files": files, "sha256": sha}


def current() -> dict[str, dict]:
    """``name -> {"version", "code", "files", "sha256"}`` for the decoder and every suite of rbvit's own, as
    the code is now (``sha256``: each file's bytes, what a run compares a checkout with)."""
    from robustbench_vit.identity import DECODE_VERSION
    from robustbench_vit.suites import SUITES

    table = {"decode": _entry(DECODE_VERSION, *code_digest(DECODER, DECODER))}
    for name, cls in SUITES.items():
        if cls.__module__.startswith("robustbench_vit."):  # a test may register an example suite of its own
            table[f"suite/{name}"] = _entry(
                cls.version, *code_digest((cls.__module__, *EVERY_SUITE), COMPUTING)
            )
    return table


def test_the_covered_code_of_every_suite_and_of_the_decoder_is_found():
    table = current()
    assert "robustbench_vit/perturbations/occlusion.py" in table["suite/occlusion"]["files"]
    assert "robustbench_vit/suites/base.py" in table["suite/occlusion"]["files"]
    for name, entry in table.items():  # the normalisation inside the model and the loader's [0, 1] scaling
        if name.startswith("suite/"):
            assert {
                "robustbench_vit/models/modules.py",
                "robustbench_vit/data/loader.py",
                "robustbench_vit/data/labels.py",
                "robustbench_vit/data/datasets.py",
            } <= set(entry["files"])
    assert "robustbench_vit/attacks/self_ensemble.py" in table["suite/transfer"]["files"]
    assert "robustbench_vit/data/_info/shape16.json" in table["suite/shape_bias"]["files"]
    # the corruptions package computes in its __init__ (OPS, corrupt), and through it in its modules
    assert {
        "robustbench_vit/perturbations/corruptions/__init__.py",
        "robustbench_vit/perturbations/corruptions/weather.py",
        "robustbench_vit/perturbations/corruptions/digital.py",
    } <= set(table["suite/corruptions"]["files"])
    assert "robustbench_vit/perturbations/__init__.py" not in table["suite/occlusion"]["files"]  # re-exports
    assert table["decode"]["files"] == [
        "robustbench_vit/data/decode.py",
        "robustbench_vit/data/preprocessing.py",
    ]


def test_a_docstring_comment_or_format_change_keeps_the_digest(tmp_path):
    a = "def f(x):\n    '''Doc.'''\n    return x + 1  # one\n"
    b = "def f(x):\n    '''Other doc.'''\n\n    return (x + 1)\n"
    c = "def f(x):\n    return x + 2\n"
    canon = [_canonical(_without_docstrings(ast.parse(t))) for t in (a, b, c)]
    assert canon[0] == canon[1] != canon[2]


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="digests recorded under Python 3.11 (CI's)")
def test_code_that_computes_numbers_changed_only_with_a_decision_about_its_version():
    recorded = json.loads(TABLE.read_text())
    now = current()
    problems = []
    for name, entry in now.items():
        old = recorded.get(name)
        if old is None:
            problems.append(f"{name} is not recorded")
        elif old["code"] != entry["code"] and old["version"] == entry["version"]:
            problems.append(
                f"{name}'s code changed since version {old['version']} was recorded (it covers "
                f"{len(entry['files'])} files): bump its version if a number can change, then record"
            )
        elif old["version"] != entry["version"] or old["code"] != entry["code"]:
            problems.append(f"{name} is now version {entry['version']}: record it")
        elif old.get("sha256") != entry["sha256"]:  # a comment or docstring: the shipped bytes must be these
            problems.append(f"{name}'s files changed (comments or formatting): record them")
    problems += [f"{name} is recorded but no longer exists" for name in sorted(set(recorded) - set(now))]
    assert not problems, "; ".join(problems) + " (python -m tests.test_code_versions --record)"


def record() -> None:
    """Write the current digests and versions (after deciding on every version)."""
    TABLE.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python -m tests.test_code_versions --record")
    record()
    print(f"recorded {TABLE}")
