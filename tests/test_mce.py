"""mCE, CE and relative mCE (mce.py) against RobustBench's published ImageNet-C table."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from robustbench_vit.metrics.mce import (
    ALEXNET_ERRORS,
    BENCHMARK_CORRUPTIONS,
    MissingMeasurementError,
    mce,
    relative_mce,
)
from tests.helpers import REFERENCE

CSV = REFERENCE / "robustbench_imagenet_c_unaggregated.csv"
RBVIT = [sys.executable, "-m", "robustbench_vit.cli.commands"]


def _errors(row: pd.Series) -> dict[tuple[str, int], float]:
    return {(c, int(s)): 1.0 - float(v) for (c, s), v in row.items()}


@pytest.mark.skipif(not CSV.is_file(), reason="reference table absent")
def test_mce_of_robustbench_standard_r50():
    table = pd.read_csv(CSV, header=[0, 1], index_col=0)
    r50 = _errors(table.loc["Standard_R50"])
    assert round(100 * mce(r50), 2) == 76.37
    alexnet_row = _errors(table.loc["AlexNet"])
    assert round(100 * mce(r50, alexnet=alexnet_row), 2) == 76.38


def test_mce_refuses_missing_cells():
    errors = {(c, s): 0.5 for c in BENCHMARK_CORRUPTIONS for s in range(1, 6)}
    assert mce(errors) == pytest.approx(np.mean([0.5 / ALEXNET_ERRORS[c] for c in BENCHMARK_CORRUPTIONS]))
    del errors[("fog", 3)]
    with pytest.raises(MissingMeasurementError, match="fog/3"):
        mce(errors)
    with pytest.raises(MissingMeasurementError):
        relative_mce(errors, clean_error=0.2)


def test_relative_mce_zero_when_no_degradation():
    errors = {(c, s): 0.3 for c in BENCHMARK_CORRUPTIONS for s in range(1, 6)}
    assert relative_mce(errors, clean_error=0.3) == 0.0
