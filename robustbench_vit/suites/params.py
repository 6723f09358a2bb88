"""Suite parameters: strings from ``-p key=value``, TOML values and Python values coerced to each field's
declared type, with the ranges numeric fields declare (``Annotated[float, Range(0, 1)]``) checked where
they are parsed. NaN and infinities never pass."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from robustbench_vit.errors import ConfigError

__all__ = ["Range", "POSITIVE", "AT_LEAST_ONE", "NON_NEGATIVE", "UNIT", "check_fields", "coerce"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric suite parameter, declared in its type: ``Annotated[float, Range(0, 1)]``
    (``lo_open``: the lower bound itself is excluded). NaN and infinities never pass any parameter."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def allows(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or v <= self.hi

    def describe(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(p for p in (lo, hi) if p) or "finite"


#: common ranges
POSITIVE = Range(0, lo_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)


def coerce(value: Any, typ: Any, name: str) -> Any:
    """``value`` (a ``-p key=value`` string, or a TOML / Python value) as a value of the field type ``typ``:
    ``Literal`` choices, tuples (comma-separated, no value twice), optional values (``none``), strict booleans, numbers."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Annotated:
        number = coerce(value, args[0], name)
        for r in args[1:]:
            if isinstance(r, Range) and number is not None and not r.allows(number):
                raise ConfigError(f"suite parameter {name}={value!r} must be a finite number {r.describe()}")
        return number
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        return coerce(value, next(a for a in args if a is not type(None)), name)
    if origin is tuple:
        inner = args[0] if args else str
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(
                f"suite parameter {name}={value!r} must be a list (comma-separated on the command line)"
            )
        out = tuple(coerce(v.strip() if isinstance(v, str) else v, inner, name) for v in items if v != "")
        twice = next((v for i, v in enumerate(out) if v in out[:i]), None)
        if twice is not None:  # two conditions of one name, or one condition counted twice
            raise ConfigError(f"suite parameter {name}={value!r} lists {twice!r} twice; keep one")
        return out
    if origin is typing.Literal:
        v = value.strip() if isinstance(value, str) else value
        if isinstance(v, str) and args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            try:
                v = int(v)  # e.g. severities=1,3
            except ValueError:
                pass
        if v not in args:
            raise ConfigError(f"suite parameter {name}={value!r} is not one of: {', '.join(map(str, args))}")
        return v
    if typ is bool:
        if isinstance(value, bool):
            return value
        v = str(value).strip().lower()
        if v not in _TRUE + _FALSE:
            raise ConfigError(
                f"suite parameter {name}={value!r} must be one of true/false, 1/0, yes/no, on/off"
            )
        return v in _TRUE
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"suite parameter {name}={value!r} must be a number")
        try:
            number = typ(value) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"suite parameter {name}={value!r} is not a valid {typ.__name__}") from None
        if typ is int and isinstance(number, float):
            if not number.is_integer():
                raise ConfigError(f"suite parameter {name}={value!r} must be an integer")
            number = int(number)
        if not isinstance(number, (int, float)):
            raise ConfigError(f"suite parameter {name}={value!r} must be a number")
        if not math.isfinite(number):
            raise ConfigError(f"suite parameter {name}={value!r} must be a finite number")
        return typ(number)
    if typ is str and not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. grid = 8 in a TOML file
        raise ConfigError(f"suite parameter {name}={value!r} must be a string")
    return value


def check_fields(suite: Any) -> None:
    """Every field of a suite instance holds a value of its declared type (choices included)."""
    hints = typing.get_type_hints(type(suite), include_extras=True)
    for f in dataclasses.fields(suite):
        value = getattr(suite, f.name)
        if coerce(value, hints[f.name], f.name) != value:
            raise ConfigError(f"suite parameter {f.name}={value!r} does not match its type {hints[f.name]}")
