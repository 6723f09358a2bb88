"""`compare` over several conditions: images are the independent units, never (image, condition) pairs.

One image seen under K conditions gives K correlated outcomes; the exact McNemar test over the pooled pairs
takes them as K independent draws and overstates the evidence K-fold (a condition repeated K times made the
p-value as small as K times more images would). The pooled test is the sign test over images, restated here
from its definition with SciPy's binomial test; each condition keeps its own McNemar test, Holm-adjusted,
restated from Holm's step-down rule.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest, ttest_1samp

from robustbench_vit.results.analysis import exact_mcnemar_p, mcnemar
from tests.helpers import CIFAR10_TEST, needs_cifar


def _rows(outcomes: dict[str, dict[str, np.ndarray]], dataset: str = "imagenet-val") -> pd.DataFrame:
    """Per-image rows: ``outcomes[model][condition]`` is a bool vector over the same images."""
    rows = []
    for model, by_condition in outcomes.items():
        for condition, correct in by_condition.items():
            for i, ok in enumerate(correct):
                rows.append(
                    dict(
                        run_id=f"run-{model}",
                        model=model,
                        suite="occlusion",
                        dataset=dataset,
                        condition=condition,
                        source_model=None,
                        index=i,
                        item=f"n01440764/img{i:03d}.JPEG",
                        image_sha256=f"{i:064x}",
                        label=0,
                        label_class="n01440764",
                        pred=0 if ok else 1,
                        correct=bool(ok),
                    )
                )
    return pd.DataFrame(rows)


def _holm_restated(p: list[float]) -> list[float]:
    """Holm (1979): sort ascending, multiply the i-th smallest (0-based) by m - i, keep the running maximum."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_one_condition_is_the_exact_mcnemar_test():
    rng = np.random.default_rng(0)
    a, b = rng.random(60) < 0.7, rng.random(60) < 0.5
    test = mcnemar(_rows({"A": {"c": a}, "B": {"c": b}}), "A", "B", suite="occlusion")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    assert (test.n, test.pairs, test.a_only, test.b_only) == (60, 60, a_only, b_only)
    assert test.p_value == pytest.approx(binomtest(a_only, a_only + b_only, 0.5).pvalue, rel=1e-12)
    assert len(test.conditions) == 1 and test.conditions[0].p_value == test.p_value


def test_a_condition_repeated_k_times_is_no_more_evidence():
    """The same outcomes under 5 condition names: the pooled McNemar said p = 9e-6 where one condition says
    p = 0.08. Images are the units: the sign test gives the one-condition p-value whatever K is."""
    a = np.array([True] * 12 + [False] * 4 + [True] * 20)
    b = np.array([False] * 12 + [True] * 4 + [True] * 20)
    one = mcnemar(_rows({"A": {"c0": a}, "B": {"c0": b}}), "A", "B", suite="occlusion")
    conds = {f"c{k}": a for k in range(5)}
    five = mcnemar(_rows({"A": conds, "B": {f"c{k}": b for k in range(5)}}), "A", "B", suite="occlusion")
    assert one.p_value == pytest.approx(exact_mcnemar_p(12, 4))
    assert exact_mcnemar_p(60, 20) < 1e-5  # what pooling the pairs reported
    assert (five.n, five.pairs, five.a_only, five.b_only) == (36, 180, 12, 4)
    assert five.p_value == pytest.approx(one.p_value, rel=1e-12)


def test_the_pooled_test_is_the_sign_test_over_images_and_conditions_are_holm_adjusted():
    rng = np.random.default_rng(3)
    n, conditions = 80, ["fraction=0.25", "fraction=0.5", "fraction=0.75"]
    base = rng.random(n)
    outcomes = {
        m: {c: base + rng.normal(0, 0.3, n) > 0.3 + 0.2 * k + shift for k, c in enumerate(conditions)}
        for m, shift in (("A", -0.1), ("B", 0.05))
    }
    test = mcnemar(_rows(outcomes), "A", "B", suite="occlusion")
    diff = sum(outcomes["A"][c].astype(int) - outcomes["B"][c].astype(int) for c in conditions)
    wins_a, wins_b = int((diff > 0).sum()), int((diff < 0).sum())
    assert (test.n, test.pairs, test.a_only, test.b_only) == (n, 3 * n, wins_a, wins_b)
    assert test.p_value == pytest.approx(binomtest(wins_a, wins_a + wins_b, 0.5).pvalue, rel=1e-12)
    per = {c.condition: c for c in test.conditions}
    raw = []
    for c in conditions:
        a, b = outcomes["A"][c], outcomes["B"][c]
        ao, bo = int((a & ~b).sum()), int((~a & b).sum())
        assert (per[c].n, per[c].a_only, per[c].b_only) == (n, ao, bo)
        assert per[c].acc_a == pytest.approx(a.mean()) and per[c].acc_b == pytest.approx(b.mean())
        raw.append(binomtest(ao, ao + bo, 0.5).pvalue if ao + bo else 1.0)
    assert [per[c].p_value for c in conditions] == pytest.approx(raw, rel=1e-12)
    assert [per[c].p_holm for c in conditions] == pytest.approx(_holm_restated(raw), rel=1e-12)
    assert test.acc_a == pytest.approx(np.mean([outcomes["A"][c].mean() for c in conditions]))


def test_imagenet_c_cells_of_one_file_name_are_one_image():
    """ImageNet-C cells hold one file per val image under every corruption and severity, each with its own
    content: the image unit is the name, so 2 cells of 10 images are 10 units, not 20."""
    a = np.array([True] * 7 + [False] * 3)
    b = np.array([False] * 7 + [True] * 3)
    df = _rows({"A": {"fog/1": a, "fog/2": a}, "B": {"fog/1": b, "fog/2": b}})
    df["image_sha256"] = df.image_sha256 + df.condition  # every cell's file is another file
    test = mcnemar(df, "A", "B", suite="occlusion")
    assert (test.n, test.pairs, test.a_only, test.b_only) == (10, 20, 7, 3)


@needs_cifar
def test_the_cli_prints_the_sign_test_and_each_condition(tmp_path, cifar_card, cifar_cnn_card):
    """Through `rbvit compare` on two real patch-shuffle runs: the pooled line counts images and pairs and
    gives the sign test over images; the table gives each grid's McNemar test, Holm-adjusted; --json
    carries the same numbers, all restated here from the per-image rows."""
    import robustbench_vit as rbvit
    from robustbench_vit.cli.commands import main
    from robustbench_vit.storage.reading import load_samples

    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=30, out=str(out), cache_dir=str(tmp_path / "c"), progress=False)
    for card in (cifar_card, cifar_cnn_card):
        rbvit.evaluate(str(card), "patch_shuffle", save_samples=True, **kw)
    s = load_samples(out)
    a, b = (
        s[s.model == m].set_index(["condition", "item"]).correct for m in ("cifar_vit", "cifar_resnet10t")
    )
    b = b[a.index]
    conditions = sorted(a.index.unique("condition"))
    assert len(conditions) >= 3
    diff = (a.astype(int) - b.astype(int)).groupby("item").sum()
    wins_a, wins_b = int((diff > 0).sum()), int((diff < 0).sum())
    raw = []
    for c in conditions:
        ao, bo = int((a[c] & ~b[c]).sum()), int((~a[c] & b[c]).sum())
        raw.append(binomtest(ao, ao + bo, 0.5).pvalue if ao + bo else 1.0)

    args = ["compare", str(cifar_card), str(cifar_cnn_card), "-r", str(out), "-s", "patch_shuffle"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert f"30 shared images, {30 * len(conditions)} image-condition pairs" in res.output
    assert f"under more conditions: {wins_a}   {cifar_cnn_card}: {wins_b}\n" in res.output
    table = [line.split("\t") for line in res.output.splitlines() if line.startswith("cifar10/")]
    assert [line[0] for line in table] == [f"cifar10/{c}" for c in conditions]
    assert [float(line[6]) for line in table] == pytest.approx(raw, rel=1e-3)
    assert [float(line[7]) for line in table] == pytest.approx(_holm_restated(raw), rel=1e-3)
    for line, c in zip(table, conditions):  # each condition's difference and Newcombe's interval
        cells = [int((a[c] & b[c]).sum()), int((a[c] & ~b[c]).sum()), int((~a[c] & b[c]).sum())]
        want = _newcombe_restated(*cells, 30 - sum(cells))
        assert [float(x) for x in line[8:11]] == pytest.approx([(cells[1] - cells[2]) / 30, *want], abs=6e-5)
    res = CliRunner().invoke(main, [*args, "--json"])
    got = json.loads(res.output)
    assert (got["n"], got["pairs"], got["a_only"], got["b_only"]) == (
        30,
        30 * len(conditions),
        wins_a,
        wins_b,
    )
    sign = binomtest(wins_a, wins_a + wins_b, 0.5).pvalue if wins_a + wins_b else 1.0
    assert got["p_value"] == pytest.approx(sign, rel=1e-12)
    assert [c["p_holm"] for c in got["conditions"]] == pytest.approx(_holm_restated(raw), rel=1e-12)
    # the pooled difference: every image under every condition, so the paired t interval over images
    t = ttest_1samp(diff.to_numpy() / len(conditions), 0.0).confidence_interval(0.95)
    assert (got["diff_low"], got["diff_high"]) == pytest.approx((t.low, t.high), abs=1e-12)
    assert "over the pairs (t interval with the image as the unit)" in CliRunner().invoke(main, args).output


def _newcombe_restated(a: int, b: int, c: int, d: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Newcombe (1998), paired proportions, method 10, from the paper's notation: cells a (both correct),
    b (A only), c (B only), d (neither); Wilson limits solved from the score equation; phi from the table,
    reduced towards 0 by n/2 when positive."""
    n = a + b + c + d

    def wilson(x: int) -> tuple[float, float]:
        p = x / n
        centre, spread = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return ((centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n))

    (l1, u1), (l2, u2) = wilson(a + b), wilson(a + c)
    p1, p2 = (a + b) / n, (a + c) / n
    ad_bc = a * d - b * c
    num = ad_bc - n / 2 if ad_bc > n / 2 else min(ad_bc, 0)
    den = np.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = num / den if den else 0.0
    lo = p1 - p2 - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = p1 - p2 + np.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return (lo, hi)


@pytest.mark.parametrize(
    "table",
    [
        (1, 1, 7, 12),
        (500, 30, 10, 460),
        (40, 0, 0, 60),
        (0, 5, 3, 0),
        (90, 10, 0, 0),
        (7, 3, 3, 7),
        (0, 0, 0, 9),
    ],
)
def test_the_difference_interval_is_newcombes_method_10(table):
    from robustbench_vit.metrics.statistics import paired_difference_interval

    got = paired_difference_interval(*table)
    want = _newcombe_restated(*table)
    assert got == pytest.approx((max(-1.0, want[0]), min(1.0, want[1])), abs=1e-12)
    a, b, c, d = table
    assert got[0] <= (b - c) / sum(table) <= got[1]


def test_the_difference_interval_covers_at_its_level():
    """Simulated pairs of models on 300 images (correlated outcomes, A 2 points better): the 95% interval
    holds the true difference in 93-97% of 3000 draws."""
    from robustbench_vit.metrics.statistics import paired_difference_interval

    rng = np.random.default_rng(0)
    probs = [0.70, 0.06, 0.04, 0.20]  # both, A only, B only, neither: difference 0.02
    tables = rng.multinomial(300, probs, size=3000)
    covered = np.mean([lo <= 0.02 <= hi for lo, hi in (paired_difference_interval(*t) for t in tables)])
    assert 0.93 <= covered <= 0.97, covered


def test_the_pooled_interval_takes_the_image_as_the_unit():
    """Over K conditions the pairs of one image are correlated. The pooled interval is Student's t over
    images of the ratio estimate: with every image under every condition it is the paired t interval of the
    per-image mean difference (SciPy's one-sample t test), and it keeps its level where an interval over
    the pooled pairs, as if independent, would be too narrow."""
    from robustbench_vit.metrics.statistics import clustered_difference_interval, paired_difference_interval

    rng = np.random.default_rng(1)
    d = rng.integers(-3, 4, size=200).astype(float)  # per-image difference over K = 3 conditions
    ci = ttest_1samp(d / 3, 0.0).confidence_interval(0.95)
    assert clustered_difference_interval(d, np.full(200, 3.0)) == pytest.approx((ci.low, ci.high), abs=1e-12)

    covered = pooled_naive = 0
    # 150 images, 5 conditions; an image's kind (both right, both wrong, A wins, B wins) holds under all
    # its conditions, each outcome flipped with probability 0.1: E[a - b] = 0.8 * (0.12 - 0.08)
    truth = 0.8 * (0.12 - 0.08)
    for _ in range(1000):
        kind = rng.choice(4, size=150, p=[0.55, 0.25, 0.12, 0.08])
        a0, b0 = np.isin(kind, (0, 2)), np.isin(kind, (0, 3))
        a = a0[:, None] ^ (rng.random((150, 5)) < 0.1)
        b = b0[:, None] ^ (rng.random((150, 5)) < 0.1)
        lo, hi = clustered_difference_interval((a.astype(int) - b).sum(1), np.full(150, 5.0))
        covered += lo <= truth <= hi
        counts = [int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())]
        nlo, nhi = paired_difference_interval(*counts)
        pooled_naive += nlo <= truth <= nhi
    assert 0.93 <= covered / 1000 <= 0.97, covered
    assert pooled_naive / 1000 < covered / 1000 - 0.02, (pooled_naive, covered)
