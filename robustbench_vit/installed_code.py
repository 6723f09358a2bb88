"""What an installed library's version stands for: the code its files hold now.

Every key that names a library by its version (the libraries every number passes through, a suite's
libraries, the package that builds an architecture, the installed classes a module is built of) assumes
that the version names the code. Common ways to run other code under the same version:

- a file edited in site-packages (a quick patch to timm's attention, a print left in torchvision, a class
  list in timm's ``_info``);
- an extension rebuilt in place (torchvision's ``image.so`` linked against another libjpeg);
- a development install (``pip install -e`` of a timm checkout, or an ``.egg-info`` beside a source
  tree): a branch switched or a line changed keeps the version string.

:func:`installed_version` is the version alone while every file the distribution computes with (its
Python files, compiled extensions and shared libraries, package data; not its ``.dist-info`` nor scripts
installed outside site-packages) is the one its install recorded, else the version with a digest of what
differs: ``1.0.31 edited:<sha256>`` over the files whose content is not the hash pip recorded for them (or
that are gone). An install that recorded no hashes (a development install; conda and distribution
packages) is named by all its Python files: ``1.0.32.dev0 files:<sha256>``. An install from a URL, a local
folder or a wheel file (pip's ``direct_url.json``: ``pip install git+https://github.com/huggingface/timm``
is ``1.0.32.dev0`` at every commit of main) is named by the hashes its RECORD holds:
``1.0.32.dev0 record:<sha256>``. An unmodified pip install from an index keeps its plain version, so its
keys are those it always had.

Cost: a file whose ctime is earlier than its ``RECORD``'s was written by the install that recorded its
hash (any later write moves the ctime, which no user call can set back), so only the others are hashed,
remembered per stat tuple in the cache's content index; torch's 12,000 files take one ``stat`` each
(about 0.2 s with reading its RECORD, once per process), and a rebuilt ``libtorch_cpu.so`` is hashed once.
A package manager that rewrites files after pip recorded them (conda's prefix replacement) gives a stable
``edited:`` key of its own. Left out: the compiled files of an install that recorded no hashes, rbvit
itself (its files are compared with the table it ships: :mod:`robustbench_vit.code_manifest`), and files
edited after a process computed a version (it is computed once per process, when first needed, as the
code in memory was imported before).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
from importlib import metadata
from pathlib import Path

from robustbench_vit.data.digests import DigestIndex, default_cache_dir

__all__ = [
    "installed_version",
    "code_changes",
    "recorded_sha256",
    "installed_file_sha256",
    "module_distributions",
]

#: distributions whose code is keyed otherwise (rbvit: each suite's version and the decoder's)
_KEYED_OTHERWISE = frozenset({"robustbench-vit", "robustbench_vit"})


def _index() -> DigestIndex:
    return DigestIndex(default_cache_dir() / "identity", "installed-code")


def recorded_sha256(f: metadata.PackagePath) -> str | None:
    """The SHA-256 (hex) an install recorded for one of its files, if it recorded one (``RECORD`` holds
    ``sha256=<urlsafe base64, unpadded>``)."""
    if f.hash is None or f.hash.mode != "sha256" or not f.hash.value:
        return None
    value = f.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def recorded_sha256_of(dist_name: str, name: str) -> str | None:
    """The SHA-256 the install of ``dist_name`` recorded for its file ``name`` (``pkg/data/x.png``)."""
    try:
        files = metadata.files(dist_name) or []
    except metadata.PackageNotFoundError:
        return None
    return next((recorded_sha256(f) for f in files if f.as_posix() == name), None)


def installed_file_sha256(dist_name: str, path: Path) -> str | None:
    """The SHA-256 the install of ``dist_name`` recorded for the file at ``path`` (None: not one of its
    recorded files)."""
    try:
        root = Path(str(metadata.distribution(dist_name).locate_file(""))).resolve()
        name = path.resolve().relative_to(root).as_posix()
    except (metadata.PackageNotFoundError, ValueError):  # not installed, or a file outside its folder
        return None
    return recorded_sha256_of(dist_name, name)


def _record_file(files: list[metadata.PackagePath]) -> Path | None:
    for f in files:
        if f.name == "RECORD" and f.parent.name.endswith(".dist-info"):
            return Path(str(f.locate()))
    return None


def _direct_url(dist: metadata.Distribution) -> dict | None:
    """What pip's ``direct_url.json`` says of where the distribution was installed from (a git URL, a local
    folder or wheel), or None for an install from an index (or an install that wrote none)."""
    try:
        url = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return {}
    return url if isinstance(url, dict) or url is None else {}


def _unrecorded(dist: metadata.Distribution, files: list[metadata.PackagePath]) -> bool:
    """No RECORD says what its Python files hold: an editable install (a source tree the user keeps
    editing), a legacy ``setup.py develop`` egg-info, a conda or distribution package."""
    url = _direct_url(dist) or {}
    if (url.get("dir_info") or {}).get("editable"):
        return True
    return not any(f.hash is not None and str(f).endswith(".py") for f in files)


def _recorded_code(files: list[metadata.PackagePath]) -> list[tuple[str, str]]:
    """``(file, the hash its RECORD holds)`` of every file the library computes with: the content it was
    installed with (:func:`_edited` says where the files differ from it since)."""
    return [(str(f), f"{f.hash.mode}={f.hash.value}") for f in files if f.hash is not None and _computes(f)]


def _computes(f: metadata.PackagePath) -> bool:
    """Whether an installed file is part of what the library computes with: its Python code, compiled
    extensions and shared libraries (``_C.so``, ``libtorch_cpu.so``, torchvision's ``image.so`` with its
    JPEG decoder) and package data (timm's ``_info`` class lists); not its ``.dist-info`` metadata nor the
    scripts it installs outside site-packages (``../../bin/``, which a relocated environment rewrites)."""
    top = str(f).split("/", 1)[0]  # RECORD paths are POSIX; str ops, not pathlib: torch lists 14,700 files
    return bool(top) and top != ".." and not top.endswith((".dist-info", ".egg-info"))


def _edited(dist: metadata.Distribution, files: list[metadata.PackagePath], index: DigestIndex) -> list:
    """``(file, its SHA-256 now or "missing")`` of every file the library computes with (:func:`_computes`)
    whose content is not the hash its RECORD holds."""
    record = _record_file(files)
    settled = os.stat(record).st_ctime_ns if record is not None else -1
    root = str(dist.locate_file(""))
    changed = []
    for f in files:  # strings and one stat per file (torch: 12,000): a hash only for files written since
        if f.hash is None or not _computes(f):
            continue
        name = str(f)
        path = os.path.join(root, name)
        try:
            if os.stat(path).st_ctime_ns < settled:
                continue  # written before the install recorded its hash, and not since
        except FileNotFoundError:
            if recorded_sha256(f) is not None:
                changed.append((name, "missing"))
            continue
        if (expected := recorded_sha256(f)) is None:
            continue
        try:
            actual = index.digest_of(os.path.realpath(path), path).tobytes().hex()
        except FileNotFoundError:
            changed.append((name, "missing"))
            continue
        if actual != expected:
            changed.append((name, actual))
    return changed


def _package_locations(dist: metadata.Distribution) -> list[Path]:
    """The folders (or single modules) of a distribution's top-level packages, as an import finds them."""
    tops = (dist.read_text("top_level.txt") or "").split()
    if not tops:
        tops = sorted(m for m, ds in module_distributions().items() if dist.metadata["Name"] in ds)
    out = []
    for top in tops:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            out += [Path(p) for p in spec.submodule_search_locations]
        elif spec.origin and spec.origin.endswith(".py"):
            out.append(Path(spec.origin))
    return out


def _package_files(dist: metadata.Distribution, index: DigestIndex) -> list[tuple[str, str]]:
    """``(file, SHA-256)`` of every Python file of the distribution's packages, as an import finds them."""
    files = []
    for root in _package_locations(dist):
        paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in paths:
            if "__pycache__" in path.parts or not path.is_file():
                continue
            digest = index.digest_of(str(path.resolve()), path).tobytes().hex()
            files.append((path.name if root.is_file() else f"{root.name}/{path.relative_to(root)}", digest))
    return files


@functools.cache
def code_changes(dist_name: str) -> str:
    """``""`` for an install from an index whose files are those it recorded; else `` files:<sha256>`` (no
    RECORD of its Python files), `` record:<sha256>`` (installed from a URL or a local folder or wheel: what
    its RECORD says it was installed with) and `` edited:<sha256>`` (files that differ from their RECORD's
    hash). See the module docstring. Computed once per process."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return ""
    if dist.metadata["Name"] in _KEYED_OTHERWISE or dist_name in _KEYED_OTHERWISE:
        return ""
    index = _index()
    listed = list(dist.files or [])
    keys = []
    try:
        if _unrecorded(dist, listed):
            keys.append(("files", _package_files(dist, index)))
        else:
            if _direct_url(dist) is not None:  # a git commit, a local folder or wheel: no code named
                keys.append(("record", _recorded_code(listed)))
            keys.append(("edited", _edited(dist, listed, index)))
    finally:
        index.save()
    return "".join(f" {kind}:{_files_digest(files)}" for kind, files in keys if files)


def _files_digest(files: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted(files):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()[:16]


@functools.cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions providing it (one scan of the installed packages)."""
    return dict(metadata.packages_distributions())


def installed_version(dist_name: str) -> str:
    """The distribution's version, with :func:`code_changes` when its code is not what the version names."""
    return metadata.version(dist_name) + code_changes(dist_name)
