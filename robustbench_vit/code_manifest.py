"""rbvit's own computing code as shipped, and what a local edit of it changed.

rbvit keys its own code by versions: each suite's ``version`` and ``DECODE_VERSION``, which
``tests/test_code_versions.py`` holds to the code they cover. That names rbvit's code as released; a
researcher who edits a perturbation in a checkout (``pip install -e``) runs other code under the same
version. The table shipped beside this module (``code_versions.json``, written by ``python -m
tests.test_code_versions --record``) lists, for the decoder and each suite, the files that compute its
numbers with their SHA-256. :func:`edited_code` is empty while they hold those bytes, else a digest of the
files that differ, which then keys the suite's runs and what it stores (or the decoded-image cache): the edit
is computed anew, and the shipped code's rows resume once it is undone.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

__all__ = ["edited_code", "MANIFEST", "PACKAGE_ROOT"]

#: the folder holding the ``robustbench_vit`` package (the table's paths are relative to it)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).with_name("code_versions.json")


@functools.cache
def _shipped() -> dict[str, dict]:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):  # a copy of the package without its table: nothing to compare with
        return {}


@functools.cache
def edited_code(entry: str) -> str:
    """``""`` while the files of ``entry`` (``decode``, ``suite/<name>``) hold the bytes shipped with this
    rbvit; else ``edited:<sha256>`` over the names and digests of those that differ (or are gone).
    Computed once per process, when first needed: the code in memory was imported before."""
    files = _shipped().get(entry, {}).get("sha256", {})
    h, changed = hashlib.sha256(), False
    for name, expected in sorted(files.items()):
        try:
            actual = hashlib.sha256((PACKAGE_ROOT / name).read_bytes()).hexdigest()
        except OSError:
            actual = "missing"
        if actual != expected:
            h.update(f"{name}\0{actual}\n".encode())
            changed = True
    return f"edited:{h.hexdigest()[:16]}" if changed else ""
