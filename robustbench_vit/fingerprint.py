"""What a live network computes with besides its files: the runtime half of a module's code identity.

A module handed over in Python (or built by an entry point, or loaded and then changed in a notebook) can
compute differently with the same weights file and the same class files: a buffer outside its
``state_dict`` (``persistent=False``), a tensor or dict kept as a plain attribute, a forward hook, a
``forward`` replaced on the instance or the class, a global constant its code reads. :func:`runtime_digest`
walks all of them and hashes their content:

- functions by their code (bytecode, constants, names, defaults, closure values) and the module globals
  they read, recursively; functions and classes of installed packages (site-packages, the standard
  library) by their qualified name and the package's version, since their code changes only with it;
- tensors and arrays by dtype, shape and bytes; numbers, strings and containers by value;
- other ``nn.Module`` objects a hook or closure uses by their state and runtime; other objects by their
  type and their attributes.

The walk is deterministic (same objects, same digest in any process) and visits each object once.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import sys
import sysconfig
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["runtime_digest", "global_hooks_digest", "is_library", "value_digest"]

#: the hook tables ``nn.Module.__call__`` runs (per module, or ``_global`` for all), each with the tables
#: of its per-hook flags; registering, state-dict and load hooks never change an output
_HOOK_TABLES = (
    ("_forward_pre_hooks", ("_forward_pre_hooks_with_kwargs",)),
    ("_forward_hooks", ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")),
    ("_backward_pre_hooks", ()),
    ("_backward_hooks", ()),
)


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(sorted(str(Path(d).resolve()) for d in dirs))


@functools.cache
def is_library(module_name: str) -> bool:
    """Is ``module_name`` code of an installed package or the standard library (not the user's own)?"""
    top = module_name.split(".")[0]
    if top == "__main__":
        return False  # a script's or a notebook's own code (a kernel's __main__ may live in site-packages)
    if top in sys.builtin_module_names or top in sys.stdlib_module_names or top in ("torch", "numpy"):
        return True
    path = getattr(sys.modules.get(module_name) or sys.modules.get(top), "__file__", None)
    if not path:
        return False  # a notebook's __main__, a class built at run time
    resolved = str(Path(path).resolve())
    return any(resolved.startswith(d + "/") for d in _library_dirs())


@functools.cache
def _package_version(module_name: str) -> str:
    """The version of the package a module belongs to, with what its files changed since (an edited or
    development install: :func:`robustbench_vit.installed_code.code_changes`)."""
    from robustbench_vit.installed_code import code_changes, module_distributions

    top = module_name.split(".")[0]
    changes = "".join(code_changes(d) for d in sorted(set(module_distributions().get(top, []))))
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return version + changes
    try:
        return metadata.version(top) + changes
    except metadata.PackageNotFoundError:
        return f"python {sys.version.split()[0]}"


#: class attributes Python keeps for itself (``__slotnames__`` appears once an instance is copied)
_CLASS_BOOKKEEPING = frozenset(
    {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__slotnames__", "_abc_impl"}
)
_BUILTIN_CALLABLES = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)


#: values nested deeper than this are named by their type (Python's recursion limit is ~1000 frames)
MAX_DEPTH = 120


class _Walk:
    """One deterministic walk: tokens go to one SHA-256; each object is hashed once, later visits name it."""

    def __init__(self, *, with_state: bool = True, named: tuple[str, ...] = ()) -> None:
        self.with_state = with_state  # hash the bytes of parameters and persistent buffers too
        self.named = named  # packages named by their version like installed ones (rbvit, for outside_code)
        self.hash = hashlib.sha256()
        self.seen: dict[int, int] = {}
        self.depth = 0
        self.keep: list[Any] = []  # keeps visited objects alive, so no id is reused during the walk

    def put(self, *tokens: object) -> None:
        for token in tokens:
            self.hash.update(f"{token}\x1f".encode())

    def library(self, module_name: str) -> bool:
        return is_library(module_name) or module_name.split(".")[0] in self.named

    def first_visit(self, obj: Any) -> bool:
        if id(obj) in self.seen:
            self.put("ref", self.seen[id(obj)])
            return False
        self.seen[id(obj)] = len(self.seen)
        self.keep.append(obj)
        return True

    def tensor(self, t: torch.Tensor) -> None:
        t = t.detach()
        self.put("tensor", t.dtype, tuple(t.shape), t.layout)
        if t.is_quantized:  # its integers and the scales that map them to numbers
            t = t.cpu()
            if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                self.put(t.qscheme(), t.q_scale(), t.q_zero_point())
            else:
                self.put(t.qscheme(), t.q_per_channel_axis())
                self.tensor(t.q_per_channel_scales())
                self.tensor(t.q_per_channel_zero_points())
            t = t.int_repr()
        if t.layout == torch.strided and t.numel() and t.device.type != "meta":
            t = t.resolve_conj().resolve_neg()
            self.hash.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())

    def value(self, obj: Any) -> None:
        """Hash ``obj``; past :data:`MAX_DEPTH` nested values (a linked structure), only its type."""
        if self.depth >= MAX_DEPTH:
            self.put("deep", type(obj).__module__, type(obj).__qualname__)
            return
        self.depth += 1
        try:
            self.one_value(obj)
        finally:
            self.depth -= 1

    def one_value(self, obj: Any) -> None:  # noqa: C901 - one branch per kind of value
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.put(type(obj).__name__, repr(obj))
        elif isinstance(obj, (torch.dtype, torch.device, torch.Size, enum.Enum, np.generic, np.dtype)):
            self.put(type(obj).__name__, repr(obj))
        elif not self.first_visit(obj):
            return
        elif isinstance(obj, torch.Tensor):
            self.tensor(obj)
        elif isinstance(obj, np.ndarray):
            self.put("ndarray", obj.dtype, obj.shape)
            self.hash.update(np.ascontiguousarray(obj).tobytes())
        elif isinstance(obj, (list, tuple)):
            self.put(type(obj).__name__, len(obj))
            for item in obj:
                self.value(item)
        elif isinstance(obj, dict):
            self.put("dict", len(obj))
            for key, item in obj.items():
                self.value(key)
                self.value(item)
        elif isinstance(obj, (set, frozenset)):
            self.put("set", *sorted(_digest_of(item, self.named) for item in obj))
        elif isinstance(obj, types.ModuleType):
            self.module_object(obj)
        elif isinstance(obj, nn.Module):
            self.module(obj)
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, types.MethodType):
            self.put("method")
            self.value(obj.__func__)
            self.value(obj.__self__)
        elif isinstance(obj, _BUILTIN_CALLABLES):
            self.put("builtin", getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, (types.ModuleType, type)):
                self.value(owner)  # a bound C method: ``tensor.mul`` computes with its tensor
        elif isinstance(obj, functools.partial):
            self.put("partial")
            self.value(obj.func)
            self.value(obj.args)
            self.value(obj.keywords)
        elif isinstance(obj, (staticmethod, classmethod, property, functools.cached_property)):
            self.put(type(obj).__name__)
            for part in ("__func__", "fget", "fset", "func"):
                self.value(getattr(obj, part, None))
        elif isinstance(obj, type):
            self.cls(obj)
        else:
            self.instance(obj)

    def module_object(self, mod: types.ModuleType) -> None:
        """An imported module a function reads (``mymodels.helper(x)``): an installed package by its
        version, the user's own by what it holds in memory now, the code it runs (its functions and classes,
        an edited and reloaded helper is another model) and its plain settings."""
        if self.library(mod.__name__):
            self.put("module", mod.__name__, _package_version(mod.__name__))
            return
        self.put("module", mod.__name__)
        members = vars(mod)
        for name in sorted(members):
            item = members[name]
            own = (
                isinstance(item, (types.FunctionType, type))
                and getattr(item, "__module__", None) == mod.__name__
            )
            if not name.startswith("__") and (own or _is_plain(item)):
                self.put("member", name)
                self.value(item)

    def function(self, fn: types.FunctionType) -> None:
        if self.library(fn.__module__ or ""):
            self.put("function", fn.__module__, fn.__qualname__, _package_version(fn.__module__))
            return
        self.put("function", fn.__qualname__)
        self.code(fn.__code__)
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        for cell in fn.__closure__ or ():
            try:
                self.value(cell.cell_contents)
            except ValueError:  # an empty cell
                self.put("empty cell")
        names = sorted(_global_names(fn.__code__))
        for name in names:
            if name in fn.__globals__:
                self.put("global", name)
                self.value(fn.__globals__[name])

    def code(self, code: types.CodeType) -> None:
        self.put("code", code.co_argcount, code.co_kwonlyargcount, code.co_flags, code.co_names)
        self.put(code.co_varnames, code.co_freevars, code.co_cellvars)
        self.hash.update(code.co_code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const)
            else:
                self.value(const)

    def cls(self, cls: type) -> None:
        if self.library(cls.__module__):
            self.put("class", cls.__module__, cls.__qualname__, _package_version(cls.__module__))
            return
        self.put("class", cls.__module__, cls.__qualname__)
        for base in cls.__mro__[1:]:
            self.value(base)
        for name in sorted(vars(cls)):
            if name not in _CLASS_BOOKKEEPING:
                self.put("attr", name)
                self.value(vars(cls)[name])

    def instance(self, obj: Any) -> None:
        cls = type(obj)
        self.value(cls)
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            if self.library(cls.__module__):  # an installed package's object: its plain settings only
                state = {k: v for k, v in state.items() if _is_plain(v)}
            self.value(state)
        for slot in getattr(cls, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                self.put("slot", slot)
                self.value(getattr(obj, slot))

    def module(self, net: nn.Module) -> None:
        """A network: per submodule its class, tensors, settings and hooks (shared submodules once)."""
        self.put("nn.Module")
        for name, sub in net.named_modules(remove_duplicate=False):
            if sub is not net and not self.first_visit(sub):
                continue
            self.put("submodule", name)
            self.value(type(sub))
            for key, t in sub._parameters.items():
                self.put("parameter", key)
                self.registered(t)
            for key, t in sub._buffers.items():
                persistent = key not in sub._non_persistent_buffers_set
                self.put("buffer", key, persistent)
                if persistent:
                    self.registered(t)
                else:  # outside the state_dict: only its bytes say what it holds
                    self.value(t)
            self.hooks(sub)
            own = {k: v for k, v in vars(sub).items() if k not in _module_internals()}
            for key in sorted(own):
                self.put("attribute", key)
                self.value(own[key])

    def registered(self, t: torch.Tensor | None) -> None:
        """A parameter or persistent buffer: its bytes, or only its kind when the state digest has them."""
        if t is None or self.with_state:
            self.value(t)
        else:
            self.put("state tensor", t.dtype, tuple(t.shape))

    def hooks(self, sub: nn.Module) -> None:
        """The hooks ``nn.Module.__call__`` runs, in order, with their flags (never their handle ids, which
        count registrations in this process)."""
        for table, flags in _HOOK_TABLES:
            hooks = getattr(sub, table, None) or {}
            for key, hook in hooks.items():
                self.put("hook", table, *(key in (getattr(sub, f, None) or {}) for f in flags))
                self.value(hook)
        if getattr(sub, "_backward_hooks", None):
            self.put("full backward hook", getattr(sub, "_is_full_backward_hook", None))


@functools.cache
def _module_internals() -> frozenset[str]:
    """The attributes ``nn.Module`` sets on every instance (tensors, submodules and hooks, walked apart)."""
    return frozenset(vars(nn.Module()))


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _is_plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))


def value_digest(obj: Any) -> str:
    """SHA-256 of one value as the walk hashes it (a quantized layer's packed parameters, a tuple of
    tensors)."""
    return _digest_of(obj)


def _digest_of(obj: Any, named: tuple[str, ...] = ()) -> str:
    walk = _Walk(named=named)
    walk.value(obj)
    return walk.hash.hexdigest()


def outside_code(obj: Any) -> str | None:
    """SHA-256 of a class or function defined outside rbvit as it is in memory (a suite or a metric's
    ``compute`` registered in a notebook, whose version no test bumps: a method edited between two runs is
    other code); ``None`` for rbvit's own code, keyed by versions (``tests/test_code_versions.py``)."""
    if obj is None or str(getattr(obj, "__module__", "")).split(".")[0] == "robustbench_vit":
        return None
    return _digest_of(obj, named=("robustbench_vit",))  # rbvit's code it reaches: by version, like a package


def runtime_digest(net: nn.Module, *, with_state: bool = True) -> str:
    """SHA-256 of everything ``net`` computes with: every submodule's class (its runtime code: a method
    replaced on the class included, with the globals it reads), tensors (non-persistent buffers and tensors
    kept as attributes included), settings, hooks and functions set on the instance. ``with_state=False``
    leaves out the bytes of the parameters and persistent buffers (named and shaped only), for callers that
    hash the ``state_dict`` apart."""
    walk = _Walk(with_state=with_state)
    walk.first_visit(net)
    walk.module(net)
    return walk.hash.hexdigest()


def global_hooks_digest() -> str | None:
    """SHA-256 of the hooks registered for every module (``register_module_forward_hook`` ...), which change
    every model's outputs; None when there are none (as in any run from the command line)."""
    from torch.nn.modules import module as torch_module

    walk = _Walk()
    found = False
    for table, flags in _HOOK_TABLES:
        hooks = getattr(torch_module, f"_global{table}", None) or {}
        for key, hook in hooks.items():
            found = True
            walk.put(
                "hook", table, *(key in (getattr(torch_module, f"_global{f}", None) or {}) for f in flags)
            )
            walk.value(hook)
    return walk.hash.hexdigest() if found else None
