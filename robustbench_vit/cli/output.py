"""How ``rbvit`` prints results on stdout: a rich table in a terminal, tab-separated text when piped, JSON
lines with ``--json``. Values are never cut: table columns fold instead of ending in an ellipsis, and
the TSV form writes every number in full. Log lines go to stderr once: a library that prints through its
own handler (the Hugging Face hub client, say) is not repeated by rbvit's."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import click

__all__ = ["Format", "resolve_format", "emit", "format_option", "configure_logging", "UI"]

#: what the group options chose for every command of this invocation (``--progress``, ``-q``)
UI: dict[str, Any] = {"progress": "auto"}

Format = Literal["table", "tsv", "json"]


def format_option(f: Any = None, *, long: bool = False) -> Any:
    """``--format`` and its ``--json`` shorthand, for every command that prints rows; ``long`` adds the
    ``long`` choice (``rbvit eval``: every row as a table instead of the summary)."""
    if f is None:
        return lambda g: format_option(g, long=long)
    f = click.option("--json", "as_json", is_flag=True, help="Shorthand for --format json.")(f)
    extra = " long = every row as a table (the default table is a summary)." if long else ""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["auto", "table", "tsv", "json", *(["long"] if long else [])]),
        default="auto",
        show_default=True,
        help="Output on stdout: auto = a table in a terminal, TSV when piped; json = one object per line."
        + extra,
    )(f)


def resolve_format(fmt: str = "auto", as_json: bool = False) -> Format:
    """``auto`` is a table when stdout is a terminal and TSV otherwise (pipes, files, CI logs)."""
    if as_json or fmt == "json":
        return "json"
    if fmt in ("table", "tsv"):
        return fmt  # type: ignore[return-value]
    return "table" if sys.stdout.isatty() else "tsv"


def _cell(v: Any, full: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v) if full else (f"{round(v, 4):g}" if v == 0 or 1e-3 <= abs(v) < 1e6 else f"{v:.4g}")
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _json_value(v: Any) -> Any:
    """A value as strict JSON has it: NaN, infinities and missing values (pandas' ``NA``/``NaT``) as ``null``
    (``jq`` and JavaScript refuse the bare ``NaN`` Python writes), numpy scalars as numbers."""
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if hasattr(v, "item") and hasattr(v, "dtype"):  # a numpy scalar
        v = v.item()
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return None
    return None if isinstance(v, float) and not math.isfinite(v) else v


def json_line(obj: dict[str, Any]) -> str:
    """One object as one line of strict JSON (no ``NaN``)."""
    return json.dumps(_json_value(obj), default=str, allow_nan=False)


def emit(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: Format, title: str | None = None
) -> None:
    """Print ``rows`` (dicts) restricted to ``columns`` in the chosen format on stdout."""
    rows = list(rows)
    if fmt == "json":
        for r in rows:
            click.echo(json_line({c: r.get(c) for c in columns}))
        return
    if fmt == "tsv":
        click.echo("\t".join(columns))
        for r in rows:
            click.echo("\t".join(_cell(r.get(c), full=True).replace("\t", " ") for c in columns))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r.get(c), full=False) for c in columns])
    Console().print(table)


class _NotPrintedElsewhere(logging.Filter):
    """Drops records that a handler of their own logger (or one of its parents below the root) prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if logger.handlers:
                return False
            if not logger.propagate:
                return True
            logger = logger.parent  # type: ignore[assignment]
        return True


def configure_logging(level: int) -> None:
    """One stderr handler on the root logger at ``level``, which never repeats a library's own output."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.root.handlers:
        if not any(isinstance(f, _NotPrintedElsewhere) for f in handler.filters):
            handler.addFilter(_NotPrintedElsewhere())
