"""Interval statistics shared by the leaderboard, the figures and the report, and the paired intervals and
multiple-testing adjustment of `compare`."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["wilson_interval", "holm_adjusted", "paired_difference_interval", "clustered_difference_interval"]


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


def paired_difference_interval(
    both: int, a_only: int, b_only: int, neither: int, alpha: float = 0.05
) -> tuple[float, float]:
    """Interval of ``acc_A - acc_B`` when both models answered the same images: Newcombe's (1998, Statist.
    Med. 17, 2635-2650) hybrid score interval for paired proportions, his method 10. Each accuracy gets
    its Wilson interval; the two are combined with the correlation of the paired outcomes (phi, moved
    towards 0 by n/2 when positive, as in the paper), so the agreement of two models on most images
    narrows the interval as McNemar's test does. Counts: images both, only A, only B, neither answered."""
    n = both + a_only + b_only + neither
    if n <= 0:
        return (float("nan"), float("nan"))
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_interval(p1, n, alpha)
    l2, u2 = wilson_interval(p2, n, alpha)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    down = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    up = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return (max(-1.0, p1 - p2 - down), min(1.0, p1 - p2 + up))


def clustered_difference_interval(
    per_unit_difference: Sequence[float], per_unit_pairs: Sequence[float], alpha: float = 0.05
) -> tuple[float, float]:
    """Interval of a difference of accuracies pooled over (image, condition) pairs, with the image as
    the independent unit: the ratio estimate ``sum(d_i) / sum(k_i)`` (``d_i``: A's correct answers minus
    B's on image ``i``, over its ``k_i`` conditions), its linearised (cluster-robust) variance, and
    Student's t with n - 1 degrees of freedom. One condition per image gives the paired t interval."""
    import numpy as np
    from scipy import stats

    d, k = np.asarray(per_unit_difference, dtype=np.float64), np.asarray(per_unit_pairs, dtype=np.float64)
    n = len(d)
    if n < 2 or k.sum() <= 0:
        return (float("nan"), float("nan"))
    ratio = d.sum() / k.sum()
    residual = d - ratio * k
    se = math.sqrt(n / (n - 1) * float((residual**2).sum())) / float(k.sum())
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    return (max(-1.0, float(ratio - half)), min(1.0, float(ratio + half)))
