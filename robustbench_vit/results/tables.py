"""The leaderboard as people read it: per (suite, dataset) tables of the headline metrics (the Markdown page,
the HTML report's tables), and the two board files ``rbvit leaderboard`` writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_vit.data.tempfiles import temp_path
from robustbench_vit.errors import ConfigError
from robustbench_vit.results.leaderboard import headline_rows
from robustbench_vit.results.selection import differing_settings
from robustbench_vit.storage.store import atomic_write_table

__all__ = ["suite_tables", "render_markdown", "write_leaderboard"]


def _cell(v: float, lo: float, hi: float) -> str:
    return f"{v:.4f}" + (f" [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else "")


def _table(wide: pd.DataFrame, index_names: list[str]) -> list[str]:
    header = [*index_names, *[str(c) for c in wide.columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in wide.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append(
            "| " + " | ".join([*map(str, idx), *[v if isinstance(v, str) else "" for v in row]]) + " |"
        )
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
                wide = t.pivot_table(index="source_model", columns="label", values="cell", aggfunc="first")
                wide.index.name = "source \\ target"
                tables.append(
                    (suite, dataset, f"fooling_rate of `{cond}` (rows: source, columns: target)", wide, "")
                )
            continue
        g = g.assign(col=g["condition"] + " " + g["metric"])
        order_col = _ranking_column(g)
        wide = g.pivot_table(index=["label", "family"], columns="col", values="cell", aggfunc="first")
        wide = wide[list(dict.fromkeys(g["col"]))]
        ranks = g[g["col"] == order_col].set_index(["label", "family"])["rank"]
        wide = wide.loc[sorted(wide.index, key=lambda i: (ranks.get(i, 10**9), i))]
        prov = g.iloc[0]
        sets = _image_sets(g)
        seeds = sorted(set(g["seeds"]))
        cards = sorted(
            {
                c
                for v in g.get("comparable_with", pd.Series(dtype=object)).dropna()
                for c in v.split(", ")
                if c
            }
        )
        published = f"; comparable with published `{'`, `'.join(cards)}` (rbvit reproduce)" if cards else ""
        caption = (
            f"_ranked by `{order_col}`; preprocessing of the first model: {prov['preprocessing'].split(' mean=')[0]}; "
            f"seeds {' / '.join(seeds)} (mean over seeds); image sets: {sets}{_other_settings(g)}; "
            f"rbvit {prov['rbvit_version']}, timm {prov['timm_version']}, torch {prov['torch_version']}{published}_"
        )
        tables.append((suite, dataset, caption, wide, order_col))
    return tables


def _image_sets(g: pd.DataFrame) -> str:
    """Each model's image set in a table's caption; when the models were not all evaluated on one image set
    (another --limit or --subset, a labels file edited, an image replaced) each set is named by its id and
    the caption says the ranks compare different images."""
    several = g["image_set"].nunique() > 1 if "image_set" in g else False
    sets = ", ".join(
        sorted(
            {
                f"{r.label}: {int(r.n_images)} images"
                + (f" (set {str(r.image_set)[:8]})" if several else "")
                + (
                    f" (largest of {int(r.image_sets_available)} image sets)"
                    if r.image_sets_available > 1
                    else ""
                )
                for r in g.drop_duplicates("label").itertuples()
            }
        )
    )
    return sets + ("; NOT one image set: ranks compare models on different images" if several else "")


def _other_settings(g: pd.DataFrame) -> str:
    """Where the table's models ran a condition otherwise (PGD with 1 step for one, 50 for another: the
    condition's name does not say), the first such condition's differing settings with each model's value."""
    if "settings" not in g:
        return ""
    for cond, c in g.drop_duplicates(["condition", "label"]).groupby("condition", sort=False):
        if c["settings"].nunique() < 2:
            continue
        parsed = [(r.label, json.loads(r.settings)) for r in c.itertuples()]
        differ = differing_settings([d for _, d in parsed])
        said = "; ".join(
            f"`{k}` " + ", ".join(f"{label}: {d.get(k, '-')}" for label, d in parsed) for k in differ[:3]
        )
        return f"; NOT one protocol: `{cond}` ran with other settings ({said})"
    return ""


def _ranking_column(g: pd.DataFrame) -> str:
    """The first headline column that separates the models: never one where every model scores 0."""
    for col, vals in g.groupby("col", sort=False)["value"]:
        finite = vals[np.isfinite(vals)]
        if len(finite) and (finite != 0).any():
            return str(col)
    return str(g["col"].iloc[0])


def render_markdown(board: pd.DataFrame) -> str:
    """One Markdown table per (suite, dataset) with the suite's headline metrics, ranked by the first."""
    lines = [
        "# Leaderboard",
        "",
        "Generated by `rbvit leaderboard` from the rows under `runs/`. Values are fractions "
        "in [0, 1] unless the metric says otherwise; brackets give the 95% Wilson interval over images.",
        "",
    ]
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


def write_leaderboard(
    board: pd.DataFrame, results: str | Path, *, parquet: str | None = None, markdown: str | None = None
) -> tuple[Path, Path]:
    """Write ``leaderboard.parquet`` and ``LEADERBOARD.md`` (atomically) next to the runs."""
    import pyarrow as pa

    root = Path(results)
    if root.name in ("runs", "samples") and not (root / "runs").is_dir():
        root = root.parent  # the folder of runs itself was named: the board goes beside it, not among them
    pq_path = Path(parquet) if parquet else root / "leaderboard.parquet"
    md_path = Path(markdown) if markdown else root / "LEADERBOARD.md"
    if any(rows.resolve() in pq_path.resolve().parents for rows in (root / "runs", root / "samples")):
        raise ConfigError(
            f"--parquet {pq_path} is among the runs, where DuckDB's glob reads it as one; write it elsewhere"
        )
    atomic_write_table(pa.Table.from_pandas(board, preserve_index=False), pq_path, kind="leaderboard")
    tmp = temp_path(md_path)  # two boards written at once never share one temp file
    tmp.write_text(render_markdown(board))
    tmp.replace(md_path)
    return pq_path, md_path
