"""How the CLI fails: every error is one line on stderr with a documented exit code (README "Command line");
``rbvit --debug`` shows the traceback instead."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from robustbench_vit.errors import RbvitError

__all__ = ["friendly", "DEBUG", "OneLineErrorsGroup"]

err = Console(stderr=True)

#: exit codes (README "Command line"): 1 internal error, 2 bad parameter, 3 unknown name, 4 data,
#: 5 checkpoint / card, 6 weights unavailable, 7 out of memory, 8 file system (permission, no space),
#: 130 interrupted, 141 stdout closed by the reader (a pipe into ``head``; no message)
EXIT_INTERNAL, EXIT_CONFIG, EXIT_DATA, EXIT_OOM, EXIT_OS, EXIT_INTERRUPTED = 1, 2, 4, 7, 8, 130
EXIT_PIPE = 141

DEBUG = {"on": False}


def _fail(message: str, code: int) -> None:
    # the message is text, never markup: "[sweep]" or "[[suite]]" must print as written
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line on stderr and a documented exit code (``--debug``: traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if DEBUG["on"]:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except RbvitError as e:
            _fail(_one_line(e), e.exit_code)
        except KeyboardInterrupt:
            _fail(
                "interrupted; finished conditions are kept, rerun the same command to resume",
                EXIT_INTERRUPTED,
            )
        except BrokenPipeError:
            # stdout closed early (``rbvit leaderboard | head``): stop quietly, as other Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_PIPE)
        except FileNotFoundError as e:
            _fail(f"file not found: {e.filename or _one_line(e)}", EXIT_DATA)
        except OSError as e:
            what = f" {e.filename}" if e.filename else ""
            _fail(f"cannot access{what}: {e.strerror or _one_line(e)}", EXIT_OS)
        except OverflowError as e:
            _fail(f"a number is out of range: {_one_line(e)}", EXIT_CONFIG)
        except (ValueError, TypeError) as e:
            _fail(f"invalid input: {_one_line(e)} (rerun with --debug for the traceback)", EXIT_CONFIG)
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                _fail("out of memory; lower --batch-size or use a smaller --limit", EXIT_OOM)
            _fail(
                f"internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)",
                EXIT_INTERNAL,
            )
        except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback unless --debug
            _fail(
                f"internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)",
                EXIT_INTERNAL,
            )

    return wrapper


def refuse_repeated_options(ctx: click.Context, cmd: click.Command, args: list[str]) -> None:
    """An option that takes one value, given twice (``--data a ... --data b``): click keeps the last one
    silently, so a command line that reads as two datasets or two models evaluates one. Refused instead;
    repeatable options (``-p``, ``-s``), counts (``-v``) and flags are not concerned."""
    options = {o: p for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    seen: set[str] = set()
    i = 0
    while i < len(args) and args[i] != "--":
        token = args[i]
        name = token.split("=", 1)[0] if token.startswith("--") else token
        opt = options.get(name)
        if opt is not None and not (opt.multiple or opt.count or opt.is_flag):
            if opt.name in seen:
                raise click.UsageError(f"{max(opt.opts, key=len)} is given twice; give it once", ctx)
            seen.add(str(opt.name))
            i += "=" not in token  # its value is the next argument
        i += 1


class OneLineErrorsGroup(click.Group):
    """Usage errors (an unknown option, a missing argument, a bad value, an option given twice) as one line
    on stderr, exit 2, like every other rbvit error; ``-h`` still prints the full help."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:  # type: ignore[override]
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            refuse_repeated_options(ctx, cmd, rest)
        return name, cmd, rest

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            cmd = e.ctx.command_path if e.ctx else "rbvit"
            err.print(
                f"[red]error:[/red] {escape(' '.join(e.format_message().split()))} (see {escape(cmd)} -h)",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(e.exit_code)
        except click.Abort:
            err.print("[red]error:[/red] interrupted", highlight=False)
            sys.exit(130)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            err.print(f"[red]error:[/red] {escape(' '.join(e.format_message().split()))}", highlight=False)
            sys.exit(e.exit_code)
