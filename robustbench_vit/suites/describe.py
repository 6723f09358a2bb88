"""What a suite takes: its parameters with types, defaults and allowed values (``rbvit ls suites NAME``)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from robustbench_vit.suites.base import SUITES, Range

__all__ = ["describe_suite"]


def _range(hint: Any) -> str | None:
    """The declared range of a numeric parameter (``>= 1``, ``>= 0 and <= 1``), ``None`` if it has none."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return next((r.describe() for r in args[1:] if isinstance(r, Range)), None)
    inner = [a for a in args if a is not type(None) and a is not Ellipsis]
    return _range(inner[0]) if inner and origin is not typing.Literal else None


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "choice"
    if origin is tuple:
        return f"list of {_type_name(args[0]) if args else 'str'}"
    if args and type(None) in args:
        return f"{_type_name(next(a for a in args if a is not type(None)))} or none"
    return getattr(hint, "__name__", str(hint))


def _choices(hint: Any) -> list[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return list(args)
    if origin is tuple and args:
        return _choices(args[0])
    return []


def describe_suite(name: str) -> dict[str, Any]:
    """Name, paper, metrics, summary line and one entry per parameter of a registered suite."""
    cls = SUITES.get(name)
    hints = typing.get_type_hints(cls, include_extras=True)
    params = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        params.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": list(default) if isinstance(default, tuple) else default,
                "choices": _choices(hints[f.name]),
                "range": _range(hints[f.name]),
            }
        )
    doc = (cls.__doc__ or "").strip()
    return {
        "name": name,
        "paper": cls.paper,
        "version": cls.version,
        "metrics": list(cls.metrics),
        "summary": doc.splitlines()[0] if doc else "",
        "parameters": params,
    }
