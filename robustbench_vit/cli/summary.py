"""The compact end-of-run summary ``rbvit eval`` prints for people: each suite's headline metrics (the
leaderboard's), proportions in percent with their 95% Wilson interval over images; the Parquet files and
``--format long|tsv|json`` keep every row, with fractions."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["summary_rows", "SUMMARY_COLUMNS", "reuse_line"]

SUMMARY_COLUMNS = ["suite", "condition", "metric", "value", "95% CI", "n"]


def summary_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per headline (condition, metric) of every suite in ``df``, in run order."""
    from robustbench_vit.metrics.accumulators import METRICS
    from robustbench_vit.metrics.statistics import wilson_interval
    from robustbench_vit.results.leaderboard import headline_rows

    rows: list[dict[str, Any]] = []
    for suite in dict.fromkeys(df["suite"]):
        for r in headline_rows(df, suite).itertuples():
            percent = r.metric in METRICS and METRICS.get(r.metric).proportion
            ci = ""
            if percent and r.n > 0 and pd.notna(r.value):
                lo, hi = wilson_interval(float(r.value), int(r.n))
                ci = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
            rows.append(
                {
                    "suite": suite,
                    "condition": r.condition,
                    "metric": f"{r.metric} (%)" if percent else r.metric,
                    "value": f"{100 * r.value:.2f}" if percent else f"{r.value:.4g}",
                    "95% CI": ci,
                    "n": int(r.n),
                }
            )
    return rows


def reuse_line(df: pd.DataFrame) -> str | None:
    """``N conditions reused from OUT, M computed`` when a run found finished conditions in its results."""
    reused, computed = df.attrs.get("conditions_reused", 0), df.attrs.get("conditions_computed", 0)
    if not reused:
        return None
    return f"{reused} condition{'s' * (reused != 1)} reused from {df.attrs.get('out')}, {computed} computed"
