"""A library's version names its code only while its files are those its install recorded: a file edited in
site-packages, or a development install (``pip install -e`` of a checkout) edited or switched to another
branch, runs other code under the same version, and is keyed by that code."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from robustbench_vit import fingerprint, identity, installed_code
from tests.helpers import CIFAR10_TEST, needs_cifar

LIB = "rbvit_fakelib"
ATTN = "def scale(x):\n    return x * 0.5\n"


def _record_line(root: Path, path: Path) -> str:
    data = path.read_bytes()
    b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path.relative_to(root).as_posix()},sha256={b64},{len(data)}"


def _fresh_process() -> None:
    """What a new process starts with: no version computed yet, the library's code imported anew."""
    installed_code.code_changes.cache_clear()
    fingerprint._package_version.cache_clear()
    identity.library_versions.cache_clear()
    installed_code.module_distributions.cache_clear()
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.split(".")[0] in (LIB, "rbvit_devlib")]:
        del sys.modules[name]


@pytest.fixture()
def site(tmp_path, monkeypatch):
    """A site-packages folder on ``sys.path`` holding one wheel-installed library (its files, then the RECORD
    of their hashes, as pip writes them)."""
    site = tmp_path / "site"
    pkg = site / LIB
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "attn.py").write_text(ATTN)
    info = site / f"{LIB}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {LIB}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(f"{LIB}\n")
    lines = [_record_line(site, p) for p in (pkg / "__init__.py", pkg / "attn.py", info / "METADATA")]
    (info / "RECORD").write_text("\n".join([*lines, f"{info.name}/RECORD,,"]) + "\n")
    monkeypatch.syspath_prepend(str(site))
    _fresh_process()
    yield site
    _fresh_process()


def test_an_unchanged_install_is_its_version(site):
    assert installed_code.installed_version(LIB) == "1.0"
    (site / LIB / "attn.py").write_text(ATTN)  # rewritten with the same bytes: its ctime moved, not its code
    _fresh_process()
    assert installed_code.installed_version(LIB) == "1.0"


def test_an_edited_file_is_keyed_by_its_content(site):
    attn = site / LIB / "attn.py"
    attn.write_text(ATTN.replace("0.5", "0.25"))
    _fresh_process()
    first = installed_code.installed_version(LIB)
    assert first.startswith("1.0 edited:")
    assert fingerprint._package_version(f"{LIB}.attn") == first  # its classes in a module's identity too
    attn.write_text(ATTN.replace("0.5", "0.75"))
    _fresh_process()
    second = installed_code.installed_version(LIB)
    assert second.startswith("1.0 edited:") and second != first
    attn.write_text(ATTN)  # the install's code again: its version again
    _fresh_process()
    assert installed_code.installed_version(LIB) == "1.0"
    attn.unlink()
    _fresh_process()
    assert installed_code.installed_version(LIB).startswith("1.0 edited:")


def test_extensions_and_package_data_are_its_code_metadata_and_scripts_are_not(site):
    """A compiled extension rebuilt in place (torchvision's ``image.so`` against another libjpeg) or a class
    list edited in the package's data computes other numbers under the version: keyed like a Python file.
    The install's metadata and the scripts it put outside site-packages (which a relocated environment
    rewrites) are not code."""
    ext, info = site / LIB / "_C.so", site / f"{LIB}-1.0.dist-info"
    (site / LIB / "_C.so").write_bytes(bytes(range(256)) * 4)
    (site / LIB / "_info").mkdir()
    (site / LIB / "_info" / "synsets.txt").write_text("n01440764\nn01443537\n")
    script = site.parent / "bin" / "fakelib"
    script.parent.mkdir()
    script.write_text("#!/old/python\n")
    record = info / "RECORD"
    lines = [line for line in record.read_text().splitlines() if not line.endswith("RECORD,,")]
    lines += [_record_line(site, p) for p in (ext, site / LIB / "_info" / "synsets.txt")]
    data = script.read_bytes()
    b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    lines.append(f"../bin/fakelib,sha256={b64},{len(data)}")
    record.write_text("\n".join([*lines, f"{info.name}/RECORD,,"]) + "\n")
    _fresh_process()
    assert installed_code.installed_version(LIB) == "1.0"
    script.write_text("#!/new/python\n")  # relocated: not the library's code
    (info / "METADATA").write_text((info / "METADATA").read_text() + "Summary: edited\n")
    _fresh_process()
    assert installed_code.installed_version(LIB) == "1.0"
    keys = set()
    for path, edit in (
        (ext, bytes(range(255, -1, -1)) * 4),
        (site / LIB / "_info" / "synsets.txt", b"n01443537\n"),
    ):
        original = path.read_bytes()
        path.write_bytes(edit)
        _fresh_process()
        keys.add(installed_code.installed_version(LIB))
        path.write_bytes(original)
    assert len(keys) == 2 and all(k.startswith("1.0 edited:") for k in keys)
    _fresh_process()
    assert installed_code.installed_version(LIB) == "1.0"


def test_a_development_install_is_keyed_by_its_source(tmp_path, monkeypatch):
    """``pip install -e`` leaves a RECORD of its metadata only: the source tree is hashed instead, so a
    branch switched under the same version string is other code."""
    site, src = tmp_path / "site", tmp_path / "checkout"
    (src / "rbvit_devlib" / "models").mkdir(parents=True)
    (src / "rbvit_devlib" / "__init__.py").write_text("")
    layer = src / "rbvit_devlib" / "models" / "vit.py"
    layer.write_text(ATTN)
    info = site / "rbvit_devlib-2.0.dev0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbvit_devlib\nVersion: 2.0.dev0\n")
    (info / "top_level.txt").write_text("rbvit_devlib\n")
    url = {"url": src.as_uri(), "dir_info": {"editable": True}}
    (info / "direct_url.json").write_text(json.dumps(url))
    (info / "RECORD").write_text(f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(src))
    _fresh_process()
    first = installed_code.installed_version("rbvit_devlib")
    assert first.startswith("2.0.dev0 files:")
    _fresh_process()
    assert installed_code.installed_version("rbvit_devlib") == first  # the same tree: the same key
    layer.write_text(ATTN.replace("0.5", "0.25"))
    _fresh_process()
    assert installed_code.installed_version("rbvit_devlib") not in (first, "2.0.dev0")
    _fresh_process()


def _reinstall(site: Path, attn: str, direct_url: dict | None) -> None:
    """What ``pip install`` of another build of the same version leaves: the new files, a RECORD of their
    hashes written after them, and pip's ``direct_url.json`` when it came from a URL, a folder or a wheel."""
    pkg, info = site / LIB, site / f"{LIB}-1.0.dist-info"
    (pkg / "attn.py").write_text(attn)
    (info / "direct_url.json").unlink(missing_ok=True)
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    lines = [_record_line(site, p) for p in (pkg / "__init__.py", pkg / "attn.py", info / "METADATA")]
    (info / "RECORD").write_text("\n".join([*lines, f"{info.name}/RECORD,,"]) + "\n")
    _fresh_process()


def test_an_install_from_a_git_commit_or_a_folder_is_keyed_by_what_it_installed(site):
    """``pip install git+https://github.com/huggingface/timm`` is ``1.0.32.dev0`` at every commit of main, and
    a wheel built from a local checkout carries the version its tree says: installed again from another
    commit, the same version string computes with other code. pip's ``direct_url.json`` says the install came
    from no index, and its RECORD's hashes then name the code; an install from an index keeps its version."""
    keys = []
    for commit, attn in (("a" * 40, ATTN), ("b" * 40, ATTN.replace("0.5", "0.25"))):
        url = {"url": "https://github.com/me/fakelib", "vcs_info": {"vcs": "git", "commit_id": commit}}
        _reinstall(site, attn, url)
        keys.append(installed_code.installed_version(LIB))
        assert keys[-1].startswith("1.0 record:") and "edited" not in keys[-1]
    assert keys[0] != keys[1]
    _reinstall(
        site,
        ATTN,
        {"url": "https://github.com/me/fakelib", "vcs_info": {"vcs": "git", "commit_id": "c" * 40}},
    )
    assert (
        installed_code.installed_version(LIB) == keys[0]
    )  # the same files from another commit: the same code
    _reinstall(site, ATTN.replace("0.5", "0.25"), {"url": "file:///src/fakelib", "dir_info": {}})
    assert installed_code.installed_version(LIB) == keys[1]  # a local folder's build of that code
    (site / LIB / "attn.py").write_text(ATTN.replace("0.5", "0.75"))  # then edited in place
    _fresh_process()
    edited = installed_code.installed_version(LIB)
    assert edited.startswith(keys[1] + " edited:")
    _reinstall(site, ATTN.replace("0.5", "0.25"), None)  # the same code from an index: its version names it
    assert installed_code.installed_version(LIB) == "1.0"


def test_the_libraries_rbvit_computes_with_are_unchanged_installs_here():
    """The keys of an unmodified environment are the plain versions they always were."""
    from importlib import metadata

    for dist in ("torch", "torchvision", "timm", "pillow", "numpy"):
        assert installed_code.code_changes(dist) == ""
    assert identity.software_identity()["torch"] == metadata.version("torch")


@needs_cifar
def test_a_suite_whose_library_was_edited_is_recomputed(site, tmp_path, cifar_card):
    """A suite computing with a library (its ``libraries``) edited in site-packages since the last run: the
    next process recomputes with the edited code, where the version alone resumed the old numbers."""
    import torch

    import robustbench_vit as rbvit
    from robustbench_vit.suites import SUITES, Condition, Suite, register_suite

    if "scaled_by_library_example" not in SUITES:

        @register_suite("scaled_by_library_example")
        @dataclass(frozen=True)
        class Scaled(Suite):
            """Accuracy on images scaled by a library function."""

            paper: ClassVar[str] = "test"

            def libraries(self) -> tuple[str, ...]:
                return (LIB,)

            def conditions(self, ctx):  # type: ignore[no-untyped-def]
                return [Condition("scaled", None, {})]

            def perturb(self, x, y, idx, cond, ctx, generator):  # type: ignore[no-untyped-def]
                return importlib.import_module(f"{LIB}.attn").scale(x).clamp(0, 1).to(torch.float32)

    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    kw |= dict(progress=False)
    first = rbvit.evaluate(str(cifar_card), "scaled_by_library_example", **kw)
    assert (
        rbvit.evaluate(str(cifar_card), "scaled_by_library_example", **kw).attrs["conditions_computed"] == 0
    )
    time.sleep(0.01)
    (site / LIB / "attn.py").write_text(ATTN.replace("0.5", "0.05"))
    _fresh_process()
    edited = rbvit.evaluate(str(cifar_card), "scaled_by_library_example", **kw)
    assert edited.attrs["conditions_computed"] == 1
    nll = lambda df: float(df.query("metric == 'nll'").value.iloc[0])  # noqa: E731
    assert nll(edited) != nll(first)
    assert (
        SUITES.get("scaled_by_library_example")()
        .identity()["libraries"][LIB]
        .startswith(f"{LIB} 1.0 edited:")
    )
