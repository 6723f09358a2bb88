"""What every figure module shares: matplotlib on the Agg backend, PNG writing, the row selections, and the
registries the figure modules fill (:data:`PLOTTERS` by figure kind, :data:`FIGURE_SUITES` for the report,
:data:`RUN_FIGURES` by suite name for the figures a finished run writes). Figures register on the results
side, by suite name: no suite imports a figure."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["PLOTTERS", "FIGURE_SUITES", "RUN_FIGURES", "layout_problems"]

log = logging.getLogger(__name__)

#: figure kind -> function drawing it from the rows of one dataset
PLOTTERS: dict[str, Callable[[pd.DataFrame, str | Path], Path | None]] = {}
#: the suites each figure kind draws (the report puts a figure next to those suites' tables)
FIGURE_SUITES: dict[str, tuple[str, ...]] = {}
#: suite name -> the figures a finished run of it writes beside its results (``rbvit eval``)
RUN_FIGURES: dict[str, Callable[[pd.DataFrame, Path], list[Path]]] = {}


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def layout_problems(fig) -> list[str]:  # type: ignore[no-untyped-def]
    """What a reader of the PNG would miss: text (titles, labels, ticks, legends) reaching outside the canvas,
    and a legend drawn over bars or lines of its axes."""
    from matplotlib.patches import Rectangle

    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems = []

    def outside(bb) -> bool:  # type: ignore[no-untyped-def]
        return (
            bb.x0 < canvas.x0 - 1 or bb.y0 < canvas.y0 - 1 or bb.x1 > canvas.x1 + 1 or bb.y1 > canvas.y1 + 1
        )

    for text in fig.texts:  # suptitles, figure-level notes
        if text.get_visible() and text.get_text().strip() and outside(text.get_window_extent(renderer)):
            problems.append(f"text {text.get_text()[:40]!r} outside the canvas")
    for ax in fig.axes:  # what is drawn of each axes: labels, the ticks in view, title, legend
        bb = ax.get_tightbbox(renderer)
        if bb is not None and outside(bb):
            name = ax.get_title() or ax.get_xlabel() or ax.get_ylabel() or "an axes"
            problems.append(f"{name[:40]!r} (title, labels or ticks) reaches outside the canvas")
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        marks = [
            p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() != 0 and p.get_visible()
        ]
        if any(box.overlaps(p.get_window_extent(renderer)) for p in marks):
            problems.append(f"the legend of {ax.get_title()[:40]!r} covers its bars")
    return problems


def _save(fig, path: str | Path, *, dpi: int, tight: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Lay out (optionally), check the layout (:func:`layout_problems`, logged as warnings), write the PNG
    (creating its folder) and free the figure."""
    if tight:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.tight_layout()
        for w in caught:
            log.warning("figure %s: %s", Path(path).name, w.message)
    fig.canvas.draw()
    for problem in layout_problems(fig):
        log.warning("figure %s: %s", Path(path).name, problem)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _dataset_of(d: pd.DataFrame) -> str:
    return ", ".join(sorted(set(d["dataset"]))) if "dataset" in d and len(d) else ""


def _per_condition(df: pd.DataFrame, suite: str, metric: str = "top1") -> pd.DataFrame:
    """The rows of ``metric`` for every condition of ``suite`` (no summaries)."""
    return df[(df.suite == suite) & (df.metric == metric) & ~df.condition.str.startswith("summary")]
