"""Building a registered suite from its name and parameters (``--param k=v``, sweep files, cards)."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any

from robustbench_vit.errors import ConfigError
from robustbench_vit.suites.base import SUITES, Suite
from robustbench_vit.suites.params import coerce

__all__ = ["make_suite"]


def make_suite(name: str, params: Mapping[str, Any] | None = None) -> Suite:
    """Instantiate a registered suite; string values (from ``--param k=v``) are coerced to field types."""
    cls = SUITES.get(name)
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"suite {name!r} has no parameter {', '.join(unknown)}{hint} (has: {', '.join(fields) or 'none'})"
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {k: coerce(v, hints[k], k) for k, v in params.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"suite {name!r}: {e}") from None
