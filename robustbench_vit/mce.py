"""ImageNet-C aggregate metrics: corruption error (CE), mCE and relative mCE
(Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR), normalised by AlexNet's errors.

CE_c = sum_s E(c, s) / sum_s E_AlexNet(c, s); mCE = mean of CE_c over the 15 corruptions.
Relative CE_c = sum_s (E(c, s) - E_clean) / sum_s (E_AlexNet(c, s) - E_AlexNet_clean).
Every input is required: a missing corruption or severity raises :class:`MissingMeasurementError`
instead of averaging what is there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from robustbench_vit.errors import RbvitError
from robustbench_vit.metrics import MetricValue
from robustbench_vit.perturbations.corruptions.tables import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)

log = logging.getLogger(__name__)

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "ALEXNET_ERRORS",
    "ALEXNET_CLEAN_ERROR",
    "MissingMeasurementError",
    "corruption_errors",
    "mce",
    "relative_mce",
    "corruption_summary",
    "COMPARABLE_TABLES",
    "CORRUPTION_HEADLINE",
]


#: AlexNet's top-1 error on each ImageNet-C corruption, averaged over the 5 severities, as used by the
#: benchmark's reference evaluation code (hendrycks/robustness, ImageNet-C ``test.py``); Appendix C of
#: the paper prints them rounded to 3 digits (88.6%, 89.4%, ...).
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}

#: AlexNet's clean ImageNet top-1 error (torchvision AlexNet, 56.52% top-1), for relative mCE.
ALEXNET_CLEAN_ERROR = 0.4348


class MissingMeasurementError(RbvitError):
    """An aggregate needs a (corruption, severity) cell that was not measured."""


def _check(errors: Mapping[tuple[str, int], float], corruptions: tuple[str, ...]) -> None:
    missing = [f"{c}/{s}" for c in corruptions for s in SEVERITIES if (c, s) not in errors]
    if missing:
        raise MissingMeasurementError(
            f"mCE needs all {len(corruptions)} corruptions x 5 severities; missing {len(missing)}: "
            f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
        )


def corruption_errors(
    errors: Mapping[tuple[str, int], float],
    alexnet: Mapping[str, float] | Mapping[tuple[str, int], float] | None = None,
    corruptions: tuple[str, ...] = BENCHMARK_CORRUPTIONS,
) -> dict[str, float]:
    """CE per corruption. ``alexnet`` maps corruption -> mean error (default: :data:`ALEXNET_ERRORS`)
    or (corruption, severity) -> error (e.g. an AlexNet row measured on the same images)."""
    _check(errors, corruptions)
    alexnet = alexnet or ALEXNET_ERRORS
    out = {}
    for c in corruptions:
        ours = sum(errors[(c, s)] for s in SEVERITIES)
        if (c, 1) in alexnet:
            ref = sum(alexnet[(c, s)] for s in SEVERITIES)  # type: ignore[index]
        else:
            ref = 5 * alexnet[c]  # type: ignore[index]
        out[c] = ours / ref
    return out


def mce(errors: Mapping[tuple[str, int], float], alexnet: Mapping | None = None) -> float:
    """Mean corruption error over the 15 benchmark corruptions (a fraction; x100 for the paper's %)."""
    return float(np.mean(list(corruption_errors(errors, alexnet).values())))


def relative_mce(
    errors: Mapping[tuple[str, int], float],
    clean_error: float,
    alexnet: Mapping[str, float] | None = None,
    alexnet_clean_error: float = ALEXNET_CLEAN_ERROR,
) -> float:
    """Relative mCE: degradation from clean, normalised by AlexNet's degradation."""
    _check(errors, BENCHMARK_CORRUPTIONS)
    alexnet = alexnet or ALEXNET_ERRORS
    rel = [
        sum(errors[(c, s)] - clean_error for s in SEVERITIES) / (5 * (alexnet[c] - alexnet_clean_error))
        for c in BENCHMARK_CORRUPTIONS
    ]
    return float(np.mean(rel))


#: the leaderboard headline of the corruption suites (files and on the fly)
CORRUPTION_HEADLINE: tuple[tuple[str, str], ...] = (
    ("summary/mce", "mce"),
    ("summary/relative_mce", "relative_mce"),
    ("summary/benchmark", "mean_corruption_accuracy"),
    ("summary/benchmark", "ece_mean"),
    ("summary/extra", "mean_corruption_accuracy"),
)

#: parameter tables whose errors may be divided by AlexNet's errors on the released ImageNet-C files:
#: the files themselves (rows of the ``imagenet_c`` suite carry no table) and make_imagenet_c's pipeline
COMPARABLE_TABLES = ("imagenet_c_files", "imagenet_c_release")


def corruption_summary(results: list[tuple[Any, MetricValue]]) -> list[tuple[Any, MetricValue]]:
    """Summaries of (condition, metric) results of the ``imagenet_c`` and ``corruptions`` suites.

    Every table: mean corruption accuracy and unnormalised CE (mean error over the severities run).
    Tables comparable with the released files only: AlexNet-normalised CE per complete corruption, and
    mCE / relative mCE when every cell is there. Each summary names the table(s) it was computed from.
    """
    from robustbench_vit.suites.base import Condition

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
