"""Installed packages' code replaced in memory: a notebook's patch of a library the numbers pass through.

A model built by name (``vit_b16``, ``timm:...``, a card) is keyed by the version of the package that builds
it, and the torch functions perturbations call by torch's version; neither says anything of
``timm.layers.Mlp.forward = mine`` typed in a notebook (a common way to read attention maps is to set one's
own ``Attention.forward``) or ``torch.nn.functional.gelu = mine``. Computed under the plain run id, such
numbers would be resumed as the unpatched code's, and the other way round. :func:`replaced_library_code`
finds every function or class of outside code (``__main__``, a notebook's, the user's own modules: neither an
installed package's nor rbvit's) set in an imported package's module or on one of its classes; it keys runs,
sweep cells and stored artifacts (:func:`robustbench_vit.identity.computing_key`) only when it finds
something, so plain runs keep their ids. rbvit's own code replaced in memory is found by
:mod:`robustbench_vit.replaced_code`.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

from robustbench_vit.fingerprint import is_library, outside_code

__all__ = ["replaced_library_code"]


def _digest(obj: Any) -> str:
    """Outside code by its content (its bytecode, the globals it reads, its closure; a partial's arguments)."""
    return outside_code(obj) or ""


def _outside_modules() -> frozenset[str]:
    """The imported modules whose code is neither an installed package's nor rbvit's: ``__main__`` (a
    script's or a notebook's cells) and the user's own source files. A module without a file (a compiled
    package's submodule such as ``cv2.aruco``, a namespace package) is a package's, not outside code."""
    out = set()
    for name, module in list(sys.modules.items()):
        if name in ("__main__", "__mp_main__"):
            out.add(name)
        elif (
            name.split(".")[0] != "robustbench_vit"
            and isinstance(getattr(module, "__file__", None), str)
            and not is_library(name)
        ):
            out.add(name)
    return frozenset(out)


def _outside_code(obj: Any, outside: frozenset[str]) -> bool:
    """Is ``obj`` a function or class of ``outside`` code (or a partial of one)? Only exact types are asked:
    a package's lazy or deprecated object warns when its ``__class__`` is read."""
    kind = type(obj)
    if kind is functools.partial:
        obj = obj.func
        kind = type(obj)
    if kind is types.FunctionType:
        return obj.__module__ in outside
    if issubclass(kind, type):
        module = obj.__dict__.get("__module__")
        return isinstance(module, str) and module in outside
    return False


def _unwrapped(item: Any) -> Any:
    """The function inside a static or class method or a property."""
    kind = type(item)
    if kind is staticmethod or kind is classmethod:
        return item.__func__
    return item.fget if kind is property else item


def replaced_library_code() -> dict[str, str]:
    """``where -> digest of the code found there`` for every function or class of outside code (a notebook's,
    the user's modules) set in an installed package's module or on one of its classes: ``Mlp.forward =
    mine`` (a common way to read attention maps), ``torch.nn.functional.gelu = mine``, ``timm.layers.Mlp =
    MyMlp``. A model built by name is keyed by its package's version, which says nothing of such a patch; so
    are the torch functions perturbations call. Empty unless a library was patched in this process (its
    cost: one pass over the imported modules and their classes, about 0.07 s). Not found: a package's
    function set under another package's name."""
    outside = _outside_modules()
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name in outside or name.split(".")[0] == "robustbench_vit":
            continue
        members = getattr(module, "__dict__", None)
        if not isinstance(members, dict):
            continue
        for attr, value in list(members.items()):
            if _outside_code(value, outside):
                found[f"{name}.{attr}"] = _digest(value)
            elif issubclass(type(value), type) and value.__dict__.get("__module__") == name:
                for key, item in list(value.__dict__.items()):  # the package's own class: a method set on it
                    if _outside_code(item := _unwrapped(item), outside):
                        found[f"{name}.{attr}.{key}"] = _digest(item)
    return found
