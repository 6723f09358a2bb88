"""The pandas helpers that recompute aggregates from rows take one leaderboard entry's rows, never a pool of
runs of other image sets, weights or precisions."""

from __future__ import annotations

import json

import pytest

from robustbench_vit.errors import DataError
from robustbench_vit.metrics.mce import BENCHMARK_CORRUPTIONS, SEVERITIES, mce, relative_mce
from robustbench_vit.results.analysis import auc_from_rows, mce_from_rows
from robustbench_vit.storage.reading import params_as_columns, rows_to_frame
from tests.test_leaderboard import row


def _cell(value: float, corruption: str, severity: int, **kw) -> dict:
    r = row(value=value, suite="imagenet_c", condition=f"{corruption}/{severity}", metric="error", **kw)
    r["params"] = json.dumps({"corruption": corruption, "severity": severity})
    r["severity"] = float(severity)
    return r


def _frame(rows: list[dict]):  # type: ignore[no-untyped-def]
    return params_as_columns(rows_to_frame(rows))


def test_mce_from_rows_never_pools_the_cells_of_two_runs():
    """A full ImageNet-C run, then a later 100-image run of one corruption: the mCE is the full run's (the
    board's entry), not the full run's cells with gaussian noise taken from the small run."""
    full = {
        (c, s): 0.30 + 0.01 * s + 0.001 * i for i, c in enumerate(BENCHMARK_CORRUPTIONS) for s in SEVERITIES
    }
    rows = [_cell(v, c, s, image_set="full", n=1000, n_images=1000) for (c, s), v in full.items()]
    rows += [_cell(0.95, "gaussian_noise", s, image_set="lim", minute=5) for s in SEVERITIES]
    rows.append(_cell(0.24, "clean", 0, image_set="full", n=1000, n_images=1000))
    df = _frame(rows)
    assert mce_from_rows(df, model="m") == pytest.approx(mce(full), abs=1e-12)
    assert mce_from_rows(df, model="m", relative=True) == pytest.approx(relative_mce(full, 0.24), abs=1e-12)


def test_two_entries_of_one_model_need_a_label():
    cells = [(c, s) for c in BENCHMARK_CORRUPTIONS for s in SEVERITIES]
    rows = [_cell(0.4, c, s, weights="w1") for c, s in cells] + [
        _cell(0.6, c, s, weights="w2") for c, s in cells
    ]
    df = _frame(rows)
    with pytest.raises(DataError, match=r"has 2 imagenet_c entries .*pass label="):
        mce_from_rows(df, model="m")
    only_w2 = {k: 0.6 for k in cells}
    assert mce_from_rows(df, model="m", label="m [w2]") == pytest.approx(mce(only_w2))
    with pytest.raises(DataError, match="no imagenet_c entry labelled"):
        mce_from_rows(df, model="m", label="m [w3]")


def test_auc_from_rows_takes_one_precision_and_averages_seeds():
    def occ(value: float, fraction: float, **kw) -> dict:
        r = row(value=value, suite="occlusion", condition=f"random/fraction={fraction}", **kw)
        r["params"] = json.dumps({"fraction": fraction})
        return r

    fp32 = [occ(1 - f, f) for f in (0.0, 0.5, 1.0)] + [occ(1 - f / 2, f, seed=1) for f in (0.0, 0.5, 1.0)]
    bf16 = [occ(0.1, f, dtype="bf16", seed=2) for f in (0.0, 0.5, 1.0)]
    df = _frame(fp32 + bf16)
    with pytest.raises(DataError, match="pass label="):
        auc_from_rows(df, model="m")
    # seeds 0 and 1 averaged per fraction: 1.0, 0.625, 0.25 -> trapezoid over [0, 1]
    assert auc_from_rows(df, model="m", label="m [fp32]") == pytest.approx((1.0 + 2 * 0.625 + 0.25) / 4)
    assert auc_from_rows(df, model="m", label="m [bf16]") == pytest.approx(0.1)


def test_pivot_shows_each_board_entry_never_a_mix_of_runs():
    """A full run, a later 10-image run of one condition, and a second weights file: the pivot's rows are
    the board's entries (the full run's cells, not the later run's for the one condition it redid)."""
    from robustbench_vit.results.analysis import pivot

    rows = [row(value=v, condition=c, image_set="full", n_images=1000) for c, v in (("a", 0.7), ("b", 0.6))]
    rows.append(row(value=0.1, condition="a", image_set="lim", n_images=10, minute=5))
    rows += [
        row(value=v, condition=c, weights="w2", seed=s) for c, v in (("a", 0.5), ("b", 0.4)) for s in (0, 1)
    ]
    t = pivot(_frame(rows), suite="clean")
    assert t.loc["m [timm:m.tag]"].tolist() == [0.7, 0.6]
    assert t.loc["m [w2]"].tolist() == [0.5, 0.4]
    assert len(t) == 2


def test_a_clean_run_normalised_otherwise_is_no_clean_counterpart():
    """A clean run with ``--mean``/``--std`` overridden shares the geometry string (``preprocessing``) with
    the occlusion run made with the model's own normalisation: it fed the network other pixels, so it is
    not that run's clean counterpart (NaN), while the clean run normalised alike is."""
    from robustbench_vit.results.analysis import relative_to_clean

    occ = row("m", 0.5, suite="occlusion", condition="random/0.5", metric="top1")
    own = row("m", 0.8, minute=1)
    other = {**row("m", 0.9, minute=2), "mean": "[0.0]", "std": "[1.0]"}
    rel = relative_to_clean(rows_to_frame([occ, own, other]))
    assert rel["clean_top1"].tolist() == [0.8]
    alone = relative_to_clean(rows_to_frame([occ, other]))
    assert alone["clean_top1"].isna().all()
