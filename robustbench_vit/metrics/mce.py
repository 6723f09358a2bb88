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

import numpy as np

from robustbench_vit.errors import RbvitError
from robustbench_vit.perturbations.corruptions.tables import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)
from robustbench_vit.replaced_code import ship

log = logging.getLogger(__name__)

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "ALEXNET_ERRORS",
    "ALEXNET_CLEAN_ERROR",
    "MissingMeasurementError",
    "corruption_errors",
    "mce",
    "relative_mce",
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
ship(__name__, "ALEXNET_ERRORS", ALEXNET_ERRORS)

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
