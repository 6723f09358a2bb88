"""Interval statistics shared by the leaderboard, the figures and the report, and the multiple-testing
adjustment of `compare`."""

from __future__ import annotations

import math

__all__ = ["wilson_interval", "holm_adjusted"]


def wilson_interval(p: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` observed on ``n`` images (statsmodels'
    ``proportion_confint``; ``p * n`` need not be whole, e.g. a mean over occlusion repeats)."""
    if n <= 0 or not math.isfinite(p):
        return (float("nan"), float("nan"))
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(min(max(p, 0.0), 1.0) * n, n, alpha=alpha, method="wilson")
    return (max(0.0, float(lo)), min(1.0, float(hi)))


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests(method="holm")``):
    each stays in its place; the family-wise error rate is controlled at any level."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]
