"""A small public pandas API over result rows: load, pivot, aggregates recomputed from rows, and
paired model comparisons from per-sample rows.

Example:
    >>> from robustbench_vit.results import analysis
    >>> df = analysis.load("results")                                       # doctest: +SKIP
    >>> analysis.pivot(df, suite="occlusion", metric="top1_mean")           # doctest: +SKIP
    >>> analysis.mce_from_rows(df, model="resnet50")                        # doctest: +SKIP
    >>> analysis.mcnemar("results", "vit_b16", "resnet50", suite="clean")   # doctest: +SKIP
    >>> analysis.relative_to_clean(df).query("suite == 'occlusion'")        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.metrics.mce import mce, relative_mce
from robustbench_vit.metrics.statistics import (
    clustered_difference_interval,
    holm_adjusted,
    paired_difference_interval,
)
from robustbench_vit.results.selection import (
    condition_settings,
    differing_settings,
    latest_network,
    runs_of_model,
)
from robustbench_vit.storage.reading import latest_runs, load_results, load_samples, oldest_first
from robustbench_vit.suites._common import curve_auc

__all__ = [
    "load",
    "pivot",
    "board_variant",
    "mce_from_rows",
    "auc_from_rows",
    "relative_to_clean",
    "ACCURACY_METRICS",
    "McNemar",
    "ConditionTest",
    "mcnemar",
    "exact_mcnemar_p",
]

load = load_results


def pivot(df: pd.DataFrame, *, suite: str, metric: str = "top1", columns: str = "condition") -> pd.DataFrame:
    """Board label x ``columns`` table of ``metric`` for one suite: the values of each leaderboard entry
    (per seed the run seen current last, the largest image set, the mean over seeds), so no row mixes
    cells of two runs and two weights or precisions of one model are two rows. Rows that share a
    ``columns`` value (e.g. ``columns="fraction"`` over occlusion modes) are averaged."""
    from robustbench_vit.results.leaderboard import board_rows

    d = df[(df.suite == suite) & (df.metric == metric)]
    if d.empty:
        return pd.DataFrame()
    return board_rows(d).pivot_table(index="label", columns=columns, values="value", aggfunc="mean")


def board_variant(df: pd.DataFrame, *, model: str, suite: str, label: str | None = None) -> pd.DataFrame:
    """The stored rows of ``model`` in ``suite`` that its leaderboard entry aggregates: per seed the run
    seen current last, the largest image set (:func:`~robustbench_vit.results.leaderboard.board_rows`).
    A model with several entries (two weights files, precisions, preprocessings or suite configurations)
    needs ``label``, one of the board's labels: rows of two entries are never pooled into one number."""
    from robustbench_vit.results.leaderboard import board_rows

    d = df[(df.suite == suite) & (df.model == model)]
    if d.empty:
        raise DataError(f"no {suite} rows for model {model!r}")
    rows = board_rows(d)
    labels = sorted(set(rows["label"]))
    if label is not None:
        if label not in labels:
            raise DataError(f"{model} has no {suite} entry labelled {label!r} (has: {'; '.join(labels)})")
        return rows[rows["label"] == label]
    if len(labels) > 1:
        raise DataError(
            f"{model} has {len(labels)} {suite} entries ({'; '.join(labels)}); pass label= one of them"
        )
    return rows


def mce_from_rows(
    df: pd.DataFrame,
    *,
    model: str,
    suite: str = "imagenet_c",
    relative: bool = False,
    label: str | None = None,
) -> float:
    """mCE (or relative mCE) of one model recomputed from the per-cell error rows of its leaderboard entry
    (:func:`board_variant`: one run per seed, cells averaged over seeds as the board does, never cells of
    two runs of other images or weights pooled); raises when a cell is missing."""
    d = board_variant(df, model=model, suite=suite, label=label)
    d = d[d.metric == "error"].groupby(["corruption", "severity"])["value"].mean()
    cells = {(c, int(s)): float(v) for (c, s), v in d.items() if c != "clean"}
    if not relative:
        return mce(cells)
    clean = [float(v) for (c, _), v in d.items() if c == "clean"]
    if not clean:
        raise DataError(f"relative mCE of {model} needs the clean error (run {suite} with clean_data=...)")
    return relative_mce(cells, clean[0])


def auc_from_rows(
    df: pd.DataFrame, *, model: str, suite: str = "occlusion", x: str = "fraction", label: str | None = None
) -> float:
    """Normalised area under the top-1 curve over ``x`` (mean over repeats and seeds) of one model's
    leaderboard entry (:func:`board_variant`)."""
    d = board_variant(df, model=model, suite=suite, label=label)
    d = d[d.metric == "top1"].dropna(subset=[x])
    s = d.groupby(x)["value"].mean()
    return curve_auc(list(s.index), list(s.values))


#: accuracy rows that :func:`relative_to_clean` sets beside the clean top-1
ACCURACY_METRICS = ("top1", "top1_mean", "robust_accuracy", "target_accuracy", "mean_corruption_accuracy")
#: what makes a clean run the counterpart of a perturbed one: the same network, pixels in, and images
CLEAN_PAIR_KEY = ["model", "arch", "weights", "preprocessing", "mean", "std", "image_set", "dtype"]


def clean_top1_table(df: pd.DataFrame, clean_suite: str = "clean") -> pd.DataFrame:
    """The latest clean top-1 per :data:`CLEAN_PAIR_KEY` (repeated clean runs count once), as
    ``CLEAN_PAIR_KEY`` columns plus ``clean_top1``."""
    clean = df[(df.suite == clean_suite) & (df.metric == "top1")]
    clean = oldest_first(clean).drop_duplicates(CLEAN_PAIR_KEY, keep="last")
    return clean[CLEAN_PAIR_KEY + ["value"]].rename(columns={"value": "clean_top1"})


def relative_to_clean(
    df: pd.DataFrame, *, metrics: tuple[str, ...] = ACCURACY_METRICS, clean_suite: str = "clean"
) -> pd.DataFrame:
    """Every accuracy row of the other suites beside the clean top-1 of the same model, weights,
    preprocessing, image set and dtype: adds ``clean_top1``, ``delta_vs_clean`` (value - clean) and
    ``relative_to_clean`` (value / clean). Repeated clean runs (other seeds, reruns) count once (the
    latest), so no row is doubled; a row without a clean counterpart gets NaN (e.g. ImageNet-C files,
    whose images are not the val images).
    """
    clean = clean_top1_table(df, clean_suite)
    rows = df[(df.suite != clean_suite) & df.metric.isin(metrics)]
    out = rows.merge(clean, on=CLEAN_PAIR_KEY, how="left", validate="many_to_one")
    out["delta_vs_clean"] = out["value"] - out["clean_top1"]
    out["relative_to_clean"] = out["value"] / out["clean_top1"]
    return out


@dataclass(frozen=True)
class ConditionTest:
    """The exact McNemar test of one condition (dataset, condition, transfer source) of a comparison."""

    dataset: str
    condition: str
    source_model: str
    n: int
    a_only: int
    b_only: int
    acc_a: float
    acc_b: float
    p_value: float
    #: Holm's adjustment over every condition of the comparison (the family-wise error rate)
    p_holm: float
    #: 95% interval of ``acc_a - acc_b`` (Newcombe's paired score interval)
    diff_low: float = float("nan")
    diff_high: float = float("nan")


@dataclass(frozen=True)
class McNemar:
    """Paired test of two models' per-image correctness, with images as the independent units.

    With one condition it is the exact McNemar test. Over several conditions (every shared condition of a
    suite) one image is seen under each, and its outcomes are not independent draws: pooling the
    (image, condition) pairs into one McNemar test would count one image K times and overstate the
    evidence. The pooled test is then the exact sign test over images of the per-image difference in
    conditions answered correctly (A's count minus B's), which is McNemar's test when K = 1; ``conditions``
    holds each condition's own McNemar test with Holm's adjustment over the family.
    """

    n: int  # images (an image is one unit however many conditions it was seen under)
    a_only: int  # images A answers correctly under more conditions than B (K = 1: A correct, B not)
    b_only: int
    acc_a: float  # accuracy over every (image, condition) pair
    acc_b: float
    p_value: float
    #: images of one name in both runs left out: their content differs (a file replaced between the runs),
    #: their class differs (a labels file edited between the runs), or one run recorded no content (rows
    #: of an rbvit before ``image_sha256``)
    content_differs: int = 0
    pairs: int = 0  # (image, condition) pairs
    conditions: tuple[ConditionTest, ...] = ()
    #: 95% interval of ``acc_a - acc_b``: Newcombe's paired score interval for one condition; over several,
    #: a cluster-robust t interval with the image as the unit (:func:`clustered_difference_interval`)
    diff_low: float = float("nan")
    diff_high: float = float("nan")


def exact_mcnemar_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (statsmodels, binomial with p = 1/2)."""
    if a_only + b_only == 0:
        return 1.0
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    return float(sm_mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)


def mcnemar(
    results: str | Path | pd.DataFrame,
    model_a: str,
    model_b: str,
    *,
    suite: str = "clean",
    condition: str | None = None,
    dataset: str | None = None,
    refuse_same: bool = False,
) -> McNemar:
    """Paired test of whether two models differ on the same images (needs ``--save-samples`` rows).

    Models are named as on the command line (``timm:resnet50``, a card path ...): each is mapped to the
    canonical key its rows are stored under. ``refuse_same`` (the CLI's) refuses two names of one stored
    model, whose test says p = 1 by construction. From a results folder, each model's rows are of the
    network it ran last and a condition the two ran with other settings is refused; given a DataFrame of
    per-image rows alone, those two checks (which read the metric rows) are left out.
    """
    runs = None if isinstance(results, pd.DataFrame) else load_results(results, expand_params=False)
    s = results if isinstance(results, pd.DataFrame) else load_samples(results, runs=runs)
    (model_a, runs_a), (model_b, runs_b) = (
        runs_of_model(m, s.model.unique(), runs) for m in (model_a, model_b)
    )
    if refuse_same and model_a == model_b and runs_a == runs_b:
        raise ConfigError(f"both names are the stored model {model_a}: compare needs two different models")
    s = s[s.suite == suite]
    if dataset:
        s = s[s.dataset == dataset]
    if condition:
        s = s[s.condition == condition]
    # per model, condition and transfer source the rows of one run, the one seen current last (never a mix
    # of runs; a transfer condition of two sources is two conditions, paired source with source)
    s = s.assign(source_model=s.source_model.fillna(""), image_sha256=s.image_sha256.fillna(""))

    def rows_of(model: str, ids: set[str] | None) -> pd.DataFrame:
        d = s[s.model == model]
        d = latest_network(d if ids is None else d[d.run_id.isin(ids)], runs, model)
        return latest_runs(d, ["dataset", "condition", "source_model"])

    a, b = rows_of(model_a, runs_a), rows_of(model_b, runs_b)
    # an image is the same image in both runs when its name and its content agree, never by its position in
    # two image lists (a --subset, a --limit, or an ImageNet-C folder lacking files shift positions)
    key = ["dataset", "condition", "source_model", "item", "image_sha256"]
    a, b = (d.drop_duplicates(key, keep="last") for d in (a, b))
    if a.empty or b.empty:
        missing = model_a if a.empty else model_b
        others = sorted(set(s.model))
        there = f" (models with per-sample rows there: {', '.join(others[:6])})" if others else ""
        raise DataError(
            f"no per-sample rows for {missing} in suite {suite}{there}; run it with --save-samples"
        )
    m = a.merge(b, on=key, suffixes=("_a", "_b"))
    # ... and graded against one class, by name: ``label`` indexes each model's own label space (rows of an
    # rbvit before ``label_class`` name no class, and pair as before)
    relabelled = m.label_class_a.notna() & m.label_class_b.notna() & (m.label_class_a != m.label_class_b)
    m = m[~relabelled.to_numpy()]
    if runs is not None and not m.empty:
        _refuse_other_settings(m, runs, model_a, model_b, suite)
    named = a.merge(b, on=["dataset", "condition", "source_model", "item"], suffixes=("_a", "_b"))
    differs = int((named.image_sha256_a != named.image_sha256_b).sum()) + int(relabelled.sum())
    if m.empty:
        why = f" ({differs} share a name but not their recorded content or label)" if differs else ""
        raise DataError(f"{model_a} and {model_b} share no evaluated images in suite {suite}{why}")
    return _paired_test(m, differs)


def _paired_test(m: pd.DataFrame, content_differs: int) -> McNemar:
    """Per-condition exact McNemar tests (Holm-adjusted) and the sign test over images of the pairs ``m``.
    An image is one unit by its dataset and name: an ImageNet-C cell's file of one name under every
    corruption and severity is one scene, as is the run's file under each generated corruption."""
    tests = []
    for (ds, cond, src), g in m.groupby(["dataset", "condition", "source_model"], sort=True):
        a_only = int((g.correct_a & ~g.correct_b).sum())
        b_only = int((~g.correct_a & g.correct_b).sum())
        acc_a, acc_b = float(g.correct_a.mean()), float(g.correct_b.mean())
        p = exact_mcnemar_p(a_only, b_only)
        both = int((g.correct_a & g.correct_b).sum())
        low, high = paired_difference_interval(both, a_only, b_only, len(g) - both - a_only - b_only)
        tests.append(ConditionTest(ds, cond, src, len(g), a_only, b_only, acc_a, acc_b, p, p, low, high))
    holm = holm_adjusted([t.p_value for t in tests])
    conditions = tuple(dataclasses.replace(t, p_holm=h) for t, h in zip(tests, holm))
    by_image = (m.correct_a.astype(int) - m.correct_b.astype(int)).groupby([m.dataset, m.item])
    per_image = by_image.sum()
    a_more, b_more = int((per_image > 0).sum()), int((per_image < 0).sum())
    if len(conditions) == 1:
        low, high = conditions[0].diff_low, conditions[0].diff_high
    else:
        low, high = clustered_difference_interval(per_image.to_numpy(), by_image.size().to_numpy())
    return McNemar(
        len(per_image),
        a_more,
        b_more,
        float(m.correct_a.mean()),
        float(m.correct_b.mean()),
        exact_mcnemar_p(a_more, b_more),
        content_differs,
        len(m),
        conditions,
        low,
        high,
    )


def _refuse_other_settings(
    pairs: pd.DataFrame, runs: pd.DataFrame, model_a: str, model_b: str, suite: str
) -> None:
    """Two runs paired under one condition name must have run it alike: PGD's ``steps``, an attack's
    restarts, a corruption backend are not in the condition's name, and pairing a 1-step attack on one
    model with a 50-step attack on the other tests the attacks, not the models. Which conditions each run
    chose (its ``epsilons`` list) does not matter."""
    cols = ["run_id", "condition", "config", "params"]
    known = {
        (r, c): condition_settings(cfg, prm)
        for r, c, cfg, prm in runs.drop_duplicates(["run_id", "condition"])[cols].itertuples(index=False)
    }
    for ra, rb, cond in (
        pairs[["run_id_a", "run_id_b", "condition"]].drop_duplicates().itertuples(index=False)
    ):
        sa, sb = known.get((ra, cond)), known.get((rb, cond))
        if sa is None or sb is None or sa == sb:
            continue
        diff = "; ".join(f"{k}: {sa.get(k, '-')} vs {sb.get(k, '-')}" for k in differing_settings([sa, sb]))
        raise ConfigError(
            f"{model_a} and {model_b} ran {suite} condition {cond} with other settings ({diff}): their "
            "per-image outcomes are of different protocols; rerun one with the other's -p parameters"
        )
