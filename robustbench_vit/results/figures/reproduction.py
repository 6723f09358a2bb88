"""Published vs rbvit: the scatter of a ``rbvit reproduce`` table (``RESULTS/reproduce/<card>.parquet``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustbench_vit.results.figures.base import _plt, _save

__all__ = ["plot_reproduction"]


def plot_reproduction(table: pd.DataFrame, path: str | Path, title: str) -> Path | None:
    """rbvit's value (with its 95% interval) against the published one, per cell; the diagonal is agreement,
    the band around it the cells' tolerance; cells measured on other images are drawn hollow."""
    if table.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    lo = float(min(table.published.min(), table.ci_low.min())) - 0.02
    hi = float(max(table.published.max(), table.ci_high.max())) + 0.02
    same = table[table.same_image_set]
    tol = float((same if len(same) else table).tolerance.max())
    band = "tolerance (same images)" if len(same) else "tolerance"
    ax.fill_between([lo, hi], [lo - tol, hi - tol], [lo + tol, hi + tol], color="0.9", label=band)
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    for same, marker_face in ((True, None), (False, "none")):
        part = table[table.same_image_set == same]
        if part.empty:
            continue
        colors = ["tab:green" if v == "within" else "tab:red" for v in part.verdict]
        err = [part.rbvit - part.ci_low, part.ci_high - part.rbvit]
        ax.errorbar(part.published, part.rbvit, yerr=err, fmt="none", ecolor="0.6", lw=0.8)
        ax.scatter(
            part.published, part.rbvit, c=colors if marker_face is None else "none", edgecolors=colors, s=18,
            label="same images" if same else "other images",
        )  # fmt: skip
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("published (fraction)")
    ax.set_ylabel("rbvit (fraction, 95% interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path, dpi=110)
