"""Progress you can see wherever rbvit runs: live bars in a terminal, plain lines in a log, a widget in
a notebook, nothing with ``-q``.

Progress has three nested levels: sweep ``cells``, a run's ``conditions``, and the ``images`` of the
condition in flight (or of the decode step). Starting a level restarts the levels below it. The runner
and the sweep only call :meth:`Progress.start` / :meth:`Progress.advance`; :func:`make_progress` picks
the display:

- a terminal: one rich bar per level with count, rate and ETA (stderr, so stdout stays clean);
- not a terminal (``2>log``, CI): a plain line per condition start/end and at most every
  ``interval`` seconds in between (images done/total, img/s, ETA);
- a Jupyter kernel: ``tqdm.auto`` bars (the notebook widget);
- ``quiet``: nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal, Protocol, TextIO

__all__ = [
    "Level",
    "Progress",
    "NullProgress",
    "LogProgress",
    "RichProgress",
    "TqdmProgress",
    "make_progress",
]

Level = Literal["cells", "conditions", "images"]
LEVELS: tuple[Level, ...] = ("cells", "conditions", "images")
_UNITS = {"cells": "cells", "conditions": "cond", "images": "img"}


class Progress(Protocol):
    """Where the runner and the sweep report progress."""

    def start(self, level: Level, description: str, total: int) -> None: ...
    def advance(self, level: Level, n: int = 1) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    """No output (``-q``, or ``progress=False`` in the API)."""

    def start(self, level: Level, description: str, total: int) -> None:
        pass

    def advance(self, level: Level, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Counter:
    def __init__(self, description: str, total: int, now: float) -> None:
        self.description, self.total, self.done, self.t0 = description, total, 0, now

    def rate(self, now: float) -> float:
        dt = now - self.t0
        return self.done / dt if dt > 0 else 0.0

    def eta(self, now: float) -> str:
        r = self.rate(now)
        return _duration((self.total - self.done) / r) if r > 0 and self.total >= self.done else "?"


class LogProgress:
    """Plain timestamped lines for logs and pipes: every start and finish, and at most every ``interval``
    seconds while images are processed."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 5.0, clock: Any = time.monotonic
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.levels: dict[Level, _Counter] = {}
        self.last_line = -float("inf")

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{time.strftime('%H:%M:%S')} rbvit: {text}\n")
        stream.flush()
        self.last_line = self.clock()

    def _where(self) -> str:
        parts = []
        for level in ("cells", "conditions"):
            c = self.levels.get(level)  # type: ignore[call-overload]
            if c is not None:
                parts.append(f"{level[:-1]} {min(c.done + 1, c.total)}/{c.total}")
        return f" ({', '.join(parts)})" if parts else ""

    def start(self, level: Level, description: str, total: int) -> None:
        for lower in LEVELS[LEVELS.index(level) :]:
            self.levels.pop(lower, None)
        self.levels[level] = _Counter(description, total, self.clock())
        if level == "images":
            self._write(f"{description}: {total} images{self._where()}")
        elif level == "cells":
            self._write(f"{description}: {total} cells to run")

    def advance(self, level: Level, n: int = 1) -> None:
        c = self.levels.get(level)
        if c is None:
            return
        c.done += n
        now = self.clock()
        if level == "images":
            finished = c.done >= c.total
            if finished or now - self.last_line >= self.interval:
                state = "done" if finished else f"ETA {c.eta(now)}"
                self._write(
                    f"{c.description}: {c.done}/{c.total} images, {c.rate(now):.1f} img/s, "
                    f"{_duration(now - c.t0)} elapsed, {state}{self._where()}"
                )
        elif level == "cells":
            self._write(f"{c.description}: {c.done}/{c.total} cells finished, ETA {c.eta(now)}")

    def close(self) -> None:
        self.levels.clear()


class RichProgress:
    """One live rich bar per level on stderr, with count, rate and time left; removed when done."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(ratio=1, overflow="fold")),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
            expand=True,
        )
        self.progress.start()
        self.tasks: dict[Level, Any] = {}

    def start(self, level: Level, description: str, total: int) -> None:
        for lower in LEVELS[LEVELS.index(level) :]:
            if lower in self.tasks:
                self.progress.remove_task(self.tasks.pop(lower))
        self.tasks[level] = self.progress.add_task(description, total=total, rate="", unit=_UNITS[level])

    def advance(self, level: Level, n: int = 1) -> None:
        task_id = self.tasks.get(level)
        if task_id is None:
            return
        self.progress.advance(task_id, n)
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(task_id)]
        speed = task.speed
        if speed:
            self.progress.update(task_id, rate=f"{speed:.1f} {task.fields['unit']}/s")

    def close(self) -> None:
        self.progress.stop()


class TqdmProgress:
    """``tqdm.auto`` bars: the notebook widget in Jupyter, a text bar elsewhere."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.bars: dict[Level, Any] = {}

    def start(self, level: Level, description: str, total: int) -> None:
        for lower in LEVELS[LEVELS.index(level) :]:
            bar = self.bars.pop(lower, None)
            if bar is not None:
                bar.close()
        self.bars[level] = self._tqdm(
            total=total, desc=description, unit=_UNITS[level], position=LEVELS.index(level), leave=False
        )

    def advance(self, level: Level, n: int = 1) -> None:
        bar = self.bars.get(level)
        if bar is not None:
            bar.update(n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``tqdm.auto`` draws a widget)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def make_progress(mode: bool | str | Progress | None = "auto", stream: TextIO | None = None) -> Progress:
    """The display for ``mode``: ``"auto"``/``True`` picks by where we run, ``False``/``None``/``"off"``
    shows nothing, ``"log"``/``"rich"``/``"tqdm"`` force one; a :class:`Progress` is used as given."""
    if not isinstance(mode, (bool, str)) and mode is not None:
        return mode
    if mode in (False, None, "off", "quiet"):
        return NullProgress()
    if mode not in (True, "auto", "log", "rich", "tqdm"):
        from robustbench_vit.errors import ConfigError

        raise ConfigError(f"progress must be auto, log, rich, tqdm or off, got {mode!r}")
    if mode == "log":
        return LogProgress(stream)
    if mode == "rich":
        return RichProgress()
    if mode == "tqdm" or in_notebook():
        return TqdmProgress()
    target = stream or sys.stderr
    return RichProgress() if getattr(target, "isatty", lambda: False)() else LogProgress(stream)
