"""What every figure module shares: matplotlib on the Agg backend, PNG writing, the row selections, and the
registries the figure modules fill (:data:`PLOTTERS` by figure kind, :data:`FIGURE_SUITES` for the report,
:data:`RUN_FIGURES` by suite name for the figures a finished run writes). Figures register on the results
side, by suite name: no suite imports a figure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["PLOTTERS", "FIGURE_SUITES", "RUN_FIGURES"]

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


def _save(fig, path: str | Path, *, dpi: int, tight: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Lay out (optionally), write the PNG (creating its folder) and free the figure."""
    if tight:
        fig.tight_layout()
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
