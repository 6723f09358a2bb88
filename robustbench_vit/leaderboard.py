"""Leaderboards: the latest value per (suite, dataset, condition, metric, source, model), ranked,
with 95% Wilson intervals for proportions; written to Parquet and rendered as Markdown (one table
per suite with its headline metrics, and a source x target matrix for transfer)."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_vit.store import atomic_write_table, load_results

__all__ = ["wilson_interval", "build_leaderboard", "write_leaderboard", "render_markdown", "PROPORTIONS",
           "headline_rows", "suite_tables"]  # fmt: skip

#: Metrics that are proportions of images (get a Wilson interval).
PROPORTIONS = {"top1", "top5", "error", "robust_accuracy", "clean_accuracy", "attack_success_rate",
               "fooling_rate", "target_accuracy", "top1_mean", "mean_corruption_accuracy"}  # fmt: skip

_KEY = ["suite", "dataset", "condition", "metric", "source_model"]


def wilson_interval(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` observed on ``n`` images."""
    if n <= 0 or not math.isfinite(p):
        return (float("nan"), float("nan"))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def build_leaderboard(results: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Long leaderboard table: one row per (suite, dataset, condition, metric, source, model), ranked."""
    df = results if isinstance(results, pd.DataFrame) else load_results(results, expand_params=False)
    cols = [*_KEY, "model", "family", "value", "n", "higher_is_better", "preprocessing", "run_id", "seed",
            "rbvit_version", "timm_version", "torch_version", "finished_at"]  # fmt: skip
    if df.empty:
        return pd.DataFrame(columns=[*cols, "ci_low", "ci_high", "rank"])
    df = df.assign(source_model=df["source_model"].fillna(""), family=df["family"].fillna(""))
    df = df.sort_values("finished_at").drop_duplicates([*_KEY, "model"], keep="last")[cols].copy()
    ci = [wilson_interval(v, n) if m in PROPORTIONS else (np.nan, np.nan)
          for v, n, m in zip(df["value"], df["n"], df["metric"])]  # fmt: skip
    df["ci_low"] = [c[0] for c in ci]
    df["ci_high"] = [c[1] for c in ci]
    df["_s"] = np.where(df["higher_is_better"], -df["value"], df["value"])
    df["rank"] = df.groupby(_KEY)["_s"].rank(method="min", na_option="bottom").astype("int64")
    return df.drop(columns="_s").sort_values([*_KEY, "rank", "model"]).reset_index(drop=True)


def headline_rows(board: pd.DataFrame, suite: str) -> pd.DataFrame:
    """The rows of ``suite`` its class declares as headline (all rows when it declares none)."""
    from robustbench_vit.suites import SUITES

    g = board[board.suite == suite]
    pairs = SUITES.get(suite).headline if suite in SUITES else ()
    if not pairs:
        return g.assign(_h=0)
    order = np.full(len(g), -1)
    for i, (pat, metric) in reversed(list(enumerate(pairs))):
        hit = g["condition"].map(lambda c, p=pat: fnmatch.fnmatch(c, p)).to_numpy()
        order[(g["metric"] == metric).to_numpy() & hit] = i
    return g.assign(_h=order)[order >= 0].sort_values(["_h", "condition"], kind="stable")


def _cell(v: float, lo: float, hi: float) -> str:
    return f"{v:.4f}" + (f" [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else "")


def _table(wide: pd.DataFrame, index_names: list[str]) -> list[str]:
    header = [*index_names, *[str(c) for c in wide.columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in wide.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([*map(str, idx), *[v if isinstance(v, str) else "" for v in row]]) + " |")
    return lines


def suite_tables(board: pd.DataFrame, cell=_cell) -> list[tuple[str, str, str, pd.DataFrame, str]]:  # type: ignore[no-untyped-def]
    """Per (suite, dataset): ``(suite, dataset, caption, wide table, ranking column)`` of the headline
    metrics, models ranked by the first; transfer gives a source x target fooling-rate matrix."""
    tables = []
    for (suite, dataset), _ in board.groupby(["suite", "dataset"], sort=True):
        g = headline_rows(board[board.dataset == dataset], suite)
        if g.empty:
            continue
        g = g.assign(cell=[cell(v, lo, hi) for v, lo, hi in zip(g["value"], g["ci_low"], g["ci_high"])])
        if suite == "transfer":
            for cond, t in g[g.metric == "fooling_rate"].groupby("condition"):
                wide = t.pivot_table(index="source_model", columns="model", values="cell", aggfunc="first")
                wide.index.name = "source \\ target"
                tables.append((suite, dataset, f"fooling_rate of `{cond}` (rows: source, columns: target)", wide, ""))
            continue
        g = g.assign(col=g["condition"] + " " + g["metric"])
        order_col = g["col"].iloc[0]
        wide = g.pivot_table(index=["model", "family"], columns="col", values="cell", aggfunc="first")
        wide = wide[list(dict.fromkeys(g["col"]))]
        ranks = g[g["col"] == order_col].set_index(["model", "family"])["rank"]
        wide = wide.loc[sorted(wide.index, key=lambda i: (ranks.get(i, 10**9), i))]
        prov = g.iloc[0]
        caption = (f"_ranked by `{order_col}`; preprocessing of the first model: {prov['preprocessing']}; "
                   f"rbvit {prov['rbvit_version']}, timm {prov['timm_version']}, torch {prov['torch_version']}_")  # fmt: skip
        tables.append((suite, dataset, caption, wide, order_col))
    return tables


def render_markdown(board: pd.DataFrame) -> str:
    """One Markdown table per (suite, dataset) with the suite's headline metrics, ranked by the first."""
    lines = ["# Leaderboard", "", "Generated by `rbvit leaderboard` from the rows under `runs/`. Values are fractions "
             "in [0, 1] unless the metric says otherwise; brackets give the 95% Wilson interval over images.", ""]  # fmt: skip
    if board.empty:
        return "\n".join([*lines, "_no results_", ""])
    last = None
    for suite, dataset, caption, wide, order_col in suite_tables(board):
        if (suite, dataset) != last:
            lines += [f"## {suite} on {dataset}", ""]
            last = (suite, dataset)
        index_names = [str(n) for n in wide.index.names]
        if order_col:
            lines += [*_table(wide, index_names), "", caption, ""]
        else:
            lines += [caption, "", *_table(wide, index_names), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_leaderboard(board: pd.DataFrame, results: str | Path, *, parquet: str | None = None,
                      markdown: str | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Write ``leaderboard.parquet`` and ``LEADERBOARD.md`` (atomically) next to the runs."""
    import pyarrow as pa

    root = Path(results)
    pq_path = Path(parquet) if parquet else root / "leaderboard.parquet"
    md_path = Path(markdown) if markdown else root / "LEADERBOARD.md"
    atomic_write_table(pa.Table.from_pandas(board, preserve_index=False), pq_path)
    tmp = md_path.with_name(f".{md_path.name}.tmp")
    tmp.write_text(render_markdown(board))
    tmp.replace(md_path)
    return pq_path, md_path
