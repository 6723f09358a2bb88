"""What a suite takes: its parameters with types, defaults and allowed values (``rbvit ls suites NAME``)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from robustbench_vit.suites.base import SUITES, Range

__all__ = ["describe_suite", "parameters_markdown", "sync_parameter_tables", "PARAMS_BEGIN", "PARAMS_END"]

#: the generated block of a suite's docs page (``docs/suites/NAME.md``)
PARAMS_BEGIN = (
    "<!-- parameters: generated from `rbvit ls suites NAME --json`; tests/test_docs.py keeps it in sync -->"
)
PARAMS_END = "<!-- end parameters -->"


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


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "" if value is None or value == [] else '`""`'
    text = value if isinstance(value, str) else json.dumps(value)
    return "`" + text.replace("|", "\\|") + "`"


def parameters_markdown(info: dict[str, Any]) -> str:
    """The parameter table of :func:`describe_suite`'s output as a Markdown table (the docs pages' block)."""
    out = ["| parameter | type | default | allowed values |", "|---|---|---|---|"]
    for p in info["parameters"]:
        allowed = ", ".join(f"`{c}`" for c in p["choices"]) if p["choices"] else (p["range"] or "")
        out.append(f"| `{p['name']}` | {p['type']} | {_cell(p['default'])} | {allowed} |")
    return "\n".join(out)


def sync_parameter_tables(folder: str | Path, *, write: bool = False) -> list[str]:
    """Suites whose page in ``folder`` lacks its block or shows other parameters than the registry; with
    ``write`` the blocks are regenerated (``python -m robustbench_vit.suites.describe docs/suites``)."""
    stale = []
    for name in SUITES.names():
        if not SUITES.get(name).__module__.startswith("robustbench_vit."):
            continue  # a suite registered from outside the package has no page here
        page = Path(folder) / f"{name}.md"
        text = page.read_text() if page.is_file() else ""
        if PARAMS_BEGIN not in text or PARAMS_END not in text:
            stale.append(name)
            continue
        head, rest = text.split(PARAMS_BEGIN, 1)
        current, tail = rest.split(PARAMS_END, 1)
        wanted = "\n" + parameters_markdown(describe_suite(name)) + "\n"
        if current != wanted:
            stale.append(name)
            if write:
                page.write_text(head + PARAMS_BEGIN + wanted + PARAMS_END + tail)
    return stale


if __name__ == "__main__":
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    left = sync_parameter_tables(sys.argv[1] if len(sys.argv) > 1 else "docs/suites", write=True)
    logging.getLogger(__name__).info("regenerated: %s", ", ".join(left) or "none")
