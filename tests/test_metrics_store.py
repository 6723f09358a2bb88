import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_vit.metrics.accumulators import ClassificationAccumulator, expected_calibration_error
from robustbench_vit.results.leaderboard import build_leaderboard, wilson_interval
from robustbench_vit.results.tables import render_markdown
from robustbench_vit.storage.reading import load_results
from robustbench_vit.storage.store import SCHEMA, RunStore


def test_accumulator_top1_top5_nll():
    acc = ClassificationAccumulator()
    logits = torch.tensor([[5.0, 1, 0, 0, 0, 0], [0, 5.0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 5.0]])
    acc.update(logits, torch.tensor([0, 2, 4]), torch.tensor([10, 11, 12]))
    r = {m.metric: m.value for m in acc.results(("top1", "top5", "nll", "error"))}
    assert r["top1"] == pytest.approx(1 / 3) and r["top5"] == 1.0 and r["error"] == pytest.approx(2 / 3)
    expected_nll = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2, 4])).item()
    assert r["nll"] == pytest.approx(expected_nll, rel=1e-5)
    s = acc.samples()
    assert s["index"].tolist() == [10, 11, 12] and s["correct"].tolist() == [True, False, False]


def test_ece_known_values():
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([False, False])) == pytest.approx(0.9)
    assert expected_calibration_error(np.array([0.55, 0.95]), np.array([True, False])) == pytest.approx(
        0.5 * 0.45 + 0.5 * 0.95
    )


def _wilson_restated(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval as rbvit computed it before statsmodels (the values must not move)."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@pytest.mark.parametrize("p,n", [(0.5, 100), (0.769, 1000), (0.0, 20), (1.0, 10), (0.7777, 90), (0.03, 5000)])
def test_wilson_interval_equals_the_restated_formula(p, n):
    assert wilson_interval(p, n) == pytest.approx(_wilson_restated(p, n), abs=1e-9)
    assert wilson_interval(0.5, 100) == pytest.approx((0.40383153, 0.59616847), abs=1e-8)


def test_exact_mcnemar_equals_the_two_sided_binomial_sum():
    from robustbench_vit.results.analysis import exact_mcnemar_p

    for a, b in [(3, 12), (0, 5), (7, 7), (40, 61), (0, 0), (1, 0)]:
        n, k = a + b, min(a, b)
        restated = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
        assert exact_mcnemar_p(a, b) == pytest.approx(restated, rel=1e-12)
    assert exact_mcnemar_p(3, 12) == pytest.approx(0.03515625)


def _row(**kw):
    base = {f.name: None for f in SCHEMA}
    base.update(
        run_id="r",
        model="m",
        suite="s",
        dataset="d",
        condition="c",
        metric="top1",
        value=0.5,
        n=10,
        higher_is_better=True,
        params=json.dumps({"fraction": 0.5}),
        finished_at=pd.Timestamp.now(tz="UTC"),
    )
    base.update(kw)
    return base


def test_store_roundtrip_expands_params_and_resume_flag(tmp_path):
    store = RunStore(tmp_path, suite="occlusion", model="vit/b", dataset="imagenet", run_id="r")
    assert not store.done("random/fraction=0.50")
    store.write("random/fraction=0.50", [_row()])
    assert store.done("random/fraction=0.50")
    assert not list(tmp_path.rglob(".*tmp*")), "temp files must be renamed away"
    df = load_results(tmp_path)
    assert len(df) == 1 and df.loc[0, "fraction"] == 0.5 and df["value"].dtype == np.float64
    assert "suite=occlusion" in str(store.path("x")) and "model=vit_b" in str(store.path("x"))


def test_leaderboard_ranks_by_direction():
    rows = pd.DataFrame(
        [
            _row(model="a", value=0.6),
            _row(model="b", value=0.7),
            _row(model="a", metric="nll", value=1.0, higher_is_better=False),
            _row(model="b", metric="nll", value=2.0, higher_is_better=False),
        ]
    )
    board = build_leaderboard(rows)
    top1 = board[board.metric == "top1"].set_index("model")["rank"]
    nll = board[board.metric == "nll"].set_index("model")["rank"]
    assert top1["b"] == 1 and nll["a"] == 1
    assert (
        board[board.metric == "top1"]["ci_low"].notna().all()
        and board[board.metric == "nll"]["ci_low"].isna().all()
    )
    assert "| a |" in render_markdown(board)


def test_accumulator_keeps_batches_in_order_across_deferred_and_host_updates():
    """Statistics wait on the device until read; predictions-only batches in between keep their place."""
    g = torch.Generator().manual_seed(0)
    acc = ClassificationAccumulator()
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    acc.update(logits[:3], labels[:3], torch.tensor([10, 11, 12]))
    acc.update_predictions(torch.tensor([2, 2]), torch.tensor([2, 0]), torch.tensor([13, 14]))
    acc.update(logits[3:], labels[3:], torch.tensor([15, 16, 17]))
    assert acc.n == 8
    s = acc.samples()
    assert s["index"].tolist() == [10, 11, 12, 13, 14, 15, 16, 17]
    assert s["label"].tolist() == [0, 1, 2, 2, 0, 3, 0, 1]
    pred = logits.argmax(1).tolist()
    assert s["pred"].tolist() == pred[:3] + [2, 2] + pred[3:]
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()
    np.testing.assert_array_equal(s["loss"][[0, 1, 2, 5, 6, 7]], loss)  # float32, exactly
    assert np.isnan(s["loss"][3:5]).all() and s["loss"].dtype == np.float32
