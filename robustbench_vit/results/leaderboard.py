"""Leaderboards that never mix incomparable runs.

Rows are grouped into *variants*: one model's weights, preprocessing, suite configuration, precision
(``dtype``) and image set (``image_set``: dataset fingerprint + the exact evaluated indices). Within a
variant, reruns keep the latest value per seed and seeds are aggregated (mean, std over seeds, number of
seeds). For every (model, weights, preprocessing, suite config, dtype, suite, dataset) and folder the
leaderboard shows the variant with the largest image set among the runs of the folder's current file list
(``listing``: a run that read an image since deleted from its folder is stale, however large; ``--all``
shows every variant) and says which one it took; two folders of other images are two entries. Models with
random weights are marked. Proportions get 95% Wilson intervals. Written to Parquet and rendered as Markdown
by :mod:`robustbench_vit.results.tables` (one table per suite with its headline metrics, and a source x
target matrix for transfer).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_vit.metrics.accumulators import PROPORTIONS
from robustbench_vit.metrics.statistics import wilson_interval
from robustbench_vit.published.matching import comparable_with
from robustbench_vit.storage.reading import load_results, recency

__all__ = [
    "wilson_interval",
    "build_leaderboard",
    "board_rows",
    "PROPORTIONS",
    "headline_rows",
    "natural_key",
]

_KEY = ["suite", "dataset", "condition", "metric", "source_model"]
#: what makes two runs of one model comparable: same model (``arch``: two cards of one name, same weights,
#: other ``kwargs``, are two models; one card edited in place is one, its run seen last current), weights,
#: preprocessing, suite configuration and precision (a bf16 run is never averaged with an fp32 one as if
#: the two were seeds)
_GROUP = ["model", "arch", "weights", "preprocessing_key", "suite_config", "dtype", "suite", "dataset"]


#: a number in a condition's name: integer, decimal or exponent form, negative after ``=``, ``(`` or ``,``
_NUMBER = re.compile(r"((?:(?<=[=(,])-)?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``grid=2x2`` before ``grid=14x14``, ``r=0.0625``
    before ``r=0.5`` before ``r=1``, ``freq=(-3,0)`` before ``freq=(2,0)``."""
    parts = _NUMBER.split(str(text))  # text and numbers alternate, text first
    return tuple(float(t) if i % 2 else t for i, t in enumerate(parts))


def _short_hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _suite_config(config: str) -> str:
    try:
        return _short_hash(json.loads(config).get("suite", {}))
    except (TypeError, ValueError):
        return ""


def _with_variant_columns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(
        source_model=df["source_model"].fillna(""),
        arch=df["arch"].fillna("") if "arch" in df else "",
        family=df["family"].fillna(""),
        weights=df["weights"].fillna(""),
        dtype=df["dtype"].fillna("") if "dtype" in df else "",
    )
    legacy = df["image_set"].isna() if "image_set" in df else pd.Series(True, index=df.index)
    # rows written before image_set existed: the dataset root and --limit identify the set as well as they can
    fallback = ["legacy:" + _short_hash([r, lim]) for r, lim in zip(df["data_root"], df["limit"])]
    image_set = np.where(legacy, fallback, df.get("image_set", pd.Series("", index=df.index)))
    n_images = df["n_images"] if "n_images" in df else pd.Series(np.nan, index=df.index)
    n_images = n_images.where(~legacy, df.groupby("run_id")["n"].transform("max"))
    pre_key = [f"{p} mean={m} std={s}" for p, m, s in zip(df["preprocessing"], df["mean"], df["std"])]
    return df.assign(
        image_set=image_set,
        n_images=n_images.astype("int64"),
        preprocessing_key=pre_key,
        suite_config=[_suite_config(c) for c in df["config"]],
        settings=_settings_column(df),
        random_weights=df["weights"].str.startswith("random"),
    )


def _settings_column(df: pd.DataFrame) -> list[str]:
    """How each row's condition ran (:func:`~robustbench_vit.results.selection.condition_settings`, as
    JSON): a board table whose models ran one condition otherwise says so."""
    from robustbench_vit.results.selection import condition_settings

    params = df["params"] if "params" in df else pd.Series("{}", index=df.index)
    seen: dict[tuple[str, str], str] = {}
    out = []
    for config, p in zip(df["config"], params):
        key = (config, p)
        if key not in seen:
            seen[key] = json.dumps(condition_settings(config, p), sort_keys=True, default=str)
        out.append(seen[key])
    return out


def build_leaderboard(results: str | Path | pd.DataFrame, *, all_variants: bool = False) -> pd.DataFrame:
    """Long leaderboard: one row per (suite, dataset, condition, metric, source, model variant), ranked.

    ``value`` is the mean over seeds (``value_std``: their standard deviation, null for one seed;
    ``n_seeds``). ``label`` names the model on the board; it carries the weights, preprocessing or
    suite configuration when one model has several, and ``(random weights)`` for untrained models.
    ``all_variants`` keeps every image set instead of the largest one per model. ``comparable_with`` names
    the paper cards whose protocol a row follows on their image set (:mod:`robustbench_vit.published`).
    """
    df = results if isinstance(results, pd.DataFrame) else load_results(results, expand_params=False)
    return _board(df, all_variants)[0]


def _board(df: pd.DataFrame, all_variants: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(leaderboard, the stored rows it aggregates with their board label)``."""
    cols = [
        *_KEY,
        "model",
        "label",
        "family",
        "value",
        "value_std",
        "n_seeds",
        "n",
        "higher_is_better",
        "weights",
        "random_weights",
        "dtype",
        "preprocessing",
        "image_set",
        "data_roots",
        "n_images",
        "image_sets_available",
        "settings",
        "run_id",
        "seeds",
        "rbvit_version",
        "timm_version",
        "torch_version",
        "finished_at",
    ]
    if df.empty:
        return pd.DataFrame(columns=[*cols, "ci_low", "ci_high", "rank", "comparable_with"]), df
    df = _with_variant_columns(df).assign(_seen=lambda d: recency(d))
    if not all_variants:
        df = _current_listings(df)
    # reruns of one seed: the row of the run seen current last wins; then seeds are aggregated
    keys = list(dict.fromkeys([*_GROUP, "image_set", *_KEY]))
    df = df.sort_values(["_seen", "finished_at"]).drop_duplicates([*keys, "seed"], keep="last")
    # the paper cards whose protocol each run followed (suite config, preprocessing, image set: see
    # robustbench_vit.published.matching); a board row keeps the protocols all its runs followed
    df = df.assign(comparable_with=comparable_with(df))
    agg = (
        df.groupby(keys, sort=False, dropna=False)
        .agg(
            value=("value", "mean"),
            value_std=("value", lambda v: float(v.std(ddof=1)) if len(v) > 1 else np.nan),
            n_seeds=("seed", "nunique"),
            seeds=("seed", lambda v: ",".join(map(str, sorted(set(v))))),
            n=("n", "max"),
            n_images=("n_images", "max"),
            finished_at=("finished_at", "max"),
            _seen=("_seen", "max"),
            run_id=("run_id", "last"),
            higher_is_better=("higher_is_better", "first"),
            settings=("settings", "first"),
            family=("family", "first"),
            random_weights=("random_weights", "first"),
            rbvit_version=("rbvit_version", "last"),
            timm_version=("timm_version", "last"),
            torch_version=("torch_version", "last"),
            comparable_with=("comparable_with", _followed_by_all),
        )
        .reset_index()
    )
    sets = agg.groupby(_GROUP)["image_set"].nunique().rename("image_sets_available")
    agg = agg.join(sets, on=_GROUP)
    # the folders each image set was read from (one image set read from two copies of a folder is one)
    roots = df.groupby([*_GROUP, "image_set"])["data_root"].agg(lambda r: ", ".join(sorted(set(map(str, r)))))
    agg = agg.join(roots.rename("data_roots"), on=[*_GROUP, "image_set"])
    if not all_variants:
        # per comparable group and folder, the largest image set (the one seen last on a tie): a --limit run
        # never replaces its folder's full run, and one folder's images never stand for another's (a folder
        # of other images that the layout names alike, ImageNet-Sketch in wnid folders beside ImageNet val)
        size = df.groupby([*_GROUP, "data_root", "image_set"], as_index=False, dropna=False).agg(
            n_images=("n_images", "max"), _seen=("_seen", "max")
        )
        best = size.sort_values(["n_images", "_seen"]).drop_duplicates([*_GROUP, "data_root"], keep="last")
        agg = agg.merge(best[[*_GROUP, "image_set"]].drop_duplicates(), on=[*_GROUP, "image_set"])
    agg["label"] = _labels(agg, all_variants)
    rows = df.merge(agg[[*keys, "label"]], on=keys).drop(columns=["_seen", "preprocessing_key"])
    agg = agg.rename(columns={"preprocessing_key": "preprocessing"})
    ci = [
        wilson_interval(v, n) if m in PROPORTIONS else (np.nan, np.nan)
        for v, n, m in zip(agg["value"], agg["n"], agg["metric"])
    ]
    agg["ci_low"] = [c[0] for c in ci]
    agg["ci_high"] = [c[1] for c in ci]
    agg["_s"] = np.where(agg["higher_is_better"], -agg["value"], agg["value"])
    agg["rank"] = agg.groupby(_KEY)["_s"].rank(method="min", na_option="bottom").astype("int64")
    out = agg.drop(columns="_s")[[*cols, "ci_low", "ci_high", "rank", "comparable_with"]]
    out = out.sort_values([*_KEY, "rank", "label"]).reset_index(drop=True)
    return out, rows


def _current_listings(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs that read their folder as it was listed by the run seen last on that folder (per model
    variant): after an image is deleted from or added to a folder, the runs of the old file list are of
    inputs that no longer exist, however many images they had. A run's list is the one it was last seen
    with (its ``_seen-`` marker, ``seen_listing``), else the one its newest row records: a run resumed
    after a change its id does not see (an ImageNet-C folder added, an image outside a ``--subset``
    deleted) is current with all its rows. Rows without a listing (older rbvit) stay."""
    if "listing" not in df:
        return df
    newest = df.assign(_l=df["listing"].fillna("")).sort_values("finished_at").groupby("run_id")["_l"].last()
    listing = df["run_id"].map(newest)
    if "seen_listing" in df:  # the list the run was last completed or resumed whole with (its marker)
        listing = df["seen_listing"].where(df["seen_listing"].notna() & (df["seen_listing"] != ""), listing)
    where = [c for c in (*_GROUP, "data_root") if c in df]
    folder = df.groupby(where, dropna=False, sort=False).ngroup()  # one number per (variant, folder)
    last_seen = (
        df.assign(_f=folder, _l=listing).sort_values(["_seen", "finished_at"]).groupby("_f")["_l"].last()
    )
    now = folder.map(last_seen)
    return df[(listing == "") | (now == "") | (listing == now)]


def board_rows(results: str | Path | pd.DataFrame, *, all_variants: bool = False) -> pd.DataFrame:
    """The stored rows a leaderboard aggregates, each with its board ``label``: per seed the run seen
    current last, the largest image set per comparable group. Figures drawn from these (one curve per
    label) show what the board shows: never a run of inputs that no longer exist averaged in, never a
    100-image run mixed with a 1000-image one, never two weights of one name on one curve."""
    df = results if isinstance(results, pd.DataFrame) else load_results(results)
    return _board(df, all_variants)[1].assign(label=lambda d: d.get("label", pd.Series(dtype=str)))


def _followed_by_all(marks: pd.Series) -> str:
    """The ``card/protocol`` entries every run of a board row followed."""
    sets = [set(filter(None, str(m).split(", "))) for m in marks]
    common = set.intersection(*sets) if sets else set()
    return ", ".join(sorted(common))


def _labels(agg: pd.DataFrame, all_variants: bool) -> list[str]:
    """Model names on the board, disambiguated where one model has several comparable groups."""
    labels = []
    per_model = agg.groupby(["model", "suite", "dataset"])
    counts = {
        k: {c: g[c].nunique() for c in ("arch", "weights", "preprocessing_key", "suite_config", "dtype")}
        for k, g in per_model
    }
    # image sets shown side by side within one comparable group (several folders, or --all)
    sets_in_group = agg.groupby(_GROUP)["image_set"].transform("nunique")
    for r, image_sets in zip(agg.itertuples(), sets_in_group):
        c = counts[(r.model, r.suite, r.dataset)]
        parts = []
        if c["arch"] > 1:
            parts.append(str(r.arch))
        if c["weights"] > 1:
            parts.append(str(r.weights))
        if c["preprocessing_key"] > 1:
            parts.append(str(r.preprocessing_key).split(" mean=")[0])
        if c["suite_config"] > 1:
            parts.append(f"config {r.suite_config}")
        if c["dtype"] > 1:
            parts.append(str(r.dtype))
        if image_sets > 1:
            parts.append(f"{int(r.n_images)} images" + ("" if all_variants else f" in {r.data_roots}"))
        label = r.model + (f" [{'; '.join(parts)}]" if parts else "")
        said = str(r.model).endswith(".random")  # the name says so already (rows since rbvit 0.2)
        labels.append(label + (" (random weights)" if r.random_weights and not said else ""))
    return labels


def headline_rows(board: pd.DataFrame, suite: str) -> pd.DataFrame:
    """The rows of ``suite`` its class declares as headline (when it declares none: every condition of its
    own ``metrics``, not the calibration metrics every condition carries; all rows of an unknown suite)."""
    from robustbench_vit.suites import SUITES

    g = board[board.suite == suite]
    if suite not in SUITES:
        return g.assign(_h=0)
    cls = SUITES.get(suite)
    pairs = cls.headline or tuple(("*", m) for m in cls.metrics)
    order = np.full(len(g), -1)
    for i, (pat, metric) in reversed(list(enumerate(pairs))):
        hit = g["condition"].map(lambda c, p=pat: fnmatch.fnmatch(c, p)).to_numpy()
        order[(g["metric"] == metric).to_numpy() & hit] = i
    g = g.assign(_h=order)[order >= 0]
    return g.iloc[sorted(range(len(g)), key=lambda i: (g["_h"].iat[i], natural_key(g["condition"].iat[i])))]
