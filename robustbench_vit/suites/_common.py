"""Helpers shared by suites: grid parsing, repeats summaries, curve areas."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.suites.base import Condition, Result

__all__ = ["AUTO_CELL_PX", "auto_grid_side", "parse_grid", "grid_label", "mean_std", "curve_auc"]


#: cell side of the ``auto`` grid: IPViT's setting, 16 px cells (a 14 x 14 grid at 224 px = ViT-B/16 patches)
AUTO_CELL_PX = 16


def auto_grid_side(side: int, cell: int = AUTO_CELL_PX) -> int:
    """The number of cells along a side that divides it with cells closest to ``cell`` pixels
    (224 -> 14, 448 -> 28, 160 -> 10, 600 -> 40 cells of 15 px); ties go to the larger cells."""
    divisors = [d for d in range(1, side + 1) if side % d == 0]
    return min(divisors, key=lambda d: (abs(side / d - cell), -side / d))


def parse_grid(spec: str | int, image_size: tuple[int, int]) -> tuple[int, int]:
    """``"14"`` -> (14, 14), ``"2x4"`` -> (2, 4), ``"pixel"`` -> the input size (pixel-level grid),
    ``"auto"`` -> cells of about 16 px that divide the input (:func:`auto_grid_side` per axis)."""
    s = str(spec).strip().lower()
    if s == "pixel":
        return image_size
    if s == "auto":
        return (auto_grid_side(image_size[0]), auto_grid_side(image_size[1]))
    try:
        if "x" in s:
            a, b = s.split("x")
            g = (int(a), int(b))
        else:
            g = (int(s), int(s))
    except ValueError:
        raise ConfigError(f"grid {spec!r} must be N, RxC, 'auto' or 'pixel'") from None
    if min(g) < 1:
        raise ConfigError(f"grid {spec!r} must have at least one cell per side")
    return g


def grid_label(g: tuple[int, int]) -> str:
    return f"{g[0]}x{g[1]}"


def mean_std(results: list[Result], *, group_key: str, metric: str = "top1", label: str = "") -> list[Result]:
    """Mean over repeats of ``metric`` for every value of ``params[group_key]``, and its sample standard
    deviation where it is defined (two or more repeats; with one repeat no ``_std`` row is written)."""
    groups: dict[Any, list[tuple[float, int, Mapping[str, Any]]]] = defaultdict(list)
    for cond, mv in results:
        if mv.metric != metric or cond.name.startswith("summary"):
            continue
        p = cond.params
        if group_key in p and (not label or p.get("mode") == label):
            groups[p[group_key]].append((mv.value, mv.n, p))
    out: list[Result] = []
    for key, vals in groups.items():
        v = np.asarray([x[0] for x in vals])
        params = {k: val for k, val in vals[0][2].items() if k not in ("repeat",)}
        params["repeats"] = len(vals)
        prefix = f"{label}/" if label else ""
        sev = vals[0][2].get("severity")
        cond = Condition(f"summary/{prefix}{group_key}={key}", None if sev is None else float(sev), params)
        n = int(vals[0][1])
        out.append((cond, MetricValue(f"{metric}_mean", float(v.mean()), n)))
        if len(v) > 1:
            out.append((cond, MetricValue(f"{metric}_std", float(v.std(ddof=1)), n)))
    return out


def curve_auc(xs: list[float], ys: list[float]) -> float:
    """Normalised area under y(x) (trapezoid rule divided by the x range)."""
    order = np.argsort(xs)
    x, y = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean()) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))
