"""The summary rows of the corruption suites (``imagenet_c`` from the files, ``corruptions`` on the fly):
mean corruption accuracy, unnormalised CE, and AlexNet-normalised CE / mCE where the parameter table is
comparable with the released files (:mod:`robustbench_vit.metrics.mce` holds the arithmetic)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.metrics.mce import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    COMPARABLE_TABLES,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    MissingMeasurementError,
    corruption_errors,
    mce,
    relative_mce,
)
from robustbench_vit.suites.base import Condition

__all__ = ["corruption_summary"]

log = logging.getLogger(__name__)


def corruption_summary(results: list[tuple[Any, MetricValue]]) -> list[tuple[Any, MetricValue]]:
    """Summaries of (condition, metric) results of the ``imagenet_c`` and ``corruptions`` suites.

    Every table: mean corruption accuracy and unnormalised CE (mean error over the severities run).
    Tables comparable with the released files only: AlexNet-normalised CE per complete corruption, and
    mCE / relative mCE when every cell is there. Each summary names the table(s) it was computed from.
    """
    err: dict[tuple[str, int], float] = {}
    ece: dict[tuple[str, int], float] = {}
    clean_err = None
    n = 0
    tables = set()
    for cond, mv in results:
        p = cond.params
        if mv.metric == "ece" and p.get("corruption") not in (None, "clean"):
            ece[(p["corruption"], int(p["severity"]))] = mv.value
        if mv.metric != "error":
            continue
        n = mv.n
        tables.add(p.get("param_table", "imagenet_c_files"))
        if p["corruption"] == "clean":
            clean_err = mv.value
        else:
            err[(p["corruption"], int(p["severity"]))] = mv.value
    out: list[tuple[Any, MetricValue]] = []
    table = "+".join(sorted(tables))

    def add(name: str, metric: str, value: float, params: dict | None = None) -> None:
        out.append(
            (
                Condition(name, None, {**(params or {}), "param_table": table}),
                MetricValue(metric, float(value), n),
            )
        )

    bench = {k: v for k, v in err.items() if k[0] in BENCHMARK_CORRUPTIONS}
    if bench:
        add(
            "summary/benchmark",
            "mean_corruption_accuracy",
            1 - np.mean(list(bench.values())),
            {"cells": len(bench)},
        )
    bench_ece = [v for k, v in ece.items() if k[0] in BENCHMARK_CORRUPTIONS]
    if bench_ece:
        add("summary/benchmark", "ece_mean", float(np.mean(bench_ece)), {"cells": len(bench_ece)})
    for c in ALL_CORRUPTIONS:
        cells = [err[(c, s)] for s in SEVERITIES if (c, s) in err]
        if cells:
            add(
                f"summary/ce_unnormalised/{c}",
                "ce_unnormalised",
                float(np.mean(cells)),
                {"corruption": c, "severities": [s for s in SEVERITIES if (c, s) in err]},
            )
    comparable = tables <= set(COMPARABLE_TABLES)
    if not comparable:
        log.info(
            "CE/mCE not reported: parameter tables %s are not comparable with the released ImageNet-C files "
            "(use table=imagenet_c_release)",
            sorted(tables - set(COMPARABLE_TABLES)),
        )
    err_for_ce = err if comparable else {}
    for c in BENCHMARK_CORRUPTIONS:
        if all((c, s) in err_for_ce for s in SEVERITIES):
            add(f"summary/ce/{c}", "ce", corruption_errors(err, corruptions=(c,))[c], {"corruption": c})
    if err_for_ce:
        try:
            add("summary/mce", "mce", mce(err), {"normaliser": "AlexNet (Hendrycks & Dietterich 2019)"})
            if clean_err is not None:
                add("summary/relative_mce", "relative_mce", relative_mce(err, clean_err))
        except MissingMeasurementError as e:
            log.warning("mCE not reported: %s", e)
    extra = {k: v for k, v in err.items() if k[0] in EXTRA_CORRUPTIONS}
    if extra:
        add(
            "summary/extra",
            "mean_corruption_accuracy",
            1 - np.mean(list(extra.values())),
            {"cells": len(extra), "corruptions": sorted({k[0] for k in extra})},
        )
    return out
