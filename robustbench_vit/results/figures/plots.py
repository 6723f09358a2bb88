"""Standard figures from result rows (matplotlib, Agg backend, PNG files).

Each function takes the rows of one dataset (:func:`robustbench_vit.storage.reading.load_results`) and draws one
curve per model; :func:`render_figures` writes one file per figure kind and dataset, so CIFAR and
ImageNet never share a panel. Accuracy curves carry their 95% Wilson interval over images as a band
(and the spread over repeats as error bars), and attack / occlusion curves start at the clean point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_vit.metrics.statistics import wilson_interval
from robustbench_vit.results.figures.base import (
    FIGURE_SUITES,
    PLOTTERS,
    RUN_FIGURES,
    _dataset_of,
    _per_condition,
    _plt,
    _save,
)

log = logging.getLogger(__name__)

__all__ = [
    "plot_occlusion",
    "plot_patch_shuffle",
    "plot_all",
    "figure_rows",
    "render_figures",
    "Figure",
    "PLOTTERS",
    "FIGURE_SUITES",
    "run_figures",
    "draw_run_figures",
]

ACCURACY = "top-1 accuracy (fraction of images)"


def _curve(ax, x: np.ndarray, g: pd.DataFrame, key: str, label: str, clean: float | None = None):  # type: ignore[no-untyped-def]
    """Mean over repeats with +- std error bars and the 95% Wilson band over images; ``clean`` adds the
    unperturbed point at x = 0 (hollow marker) when the rows have none."""
    s = g.groupby(key).agg(mean=("value", "mean"), std=("value", "std"), n=("n", "max")).sort_index()
    xs = np.asarray(x if x is not None else s.index, dtype=float)
    line = ax.errorbar(xs, s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3, label=label)
    colour = line[0].get_color()
    ci = np.array([wilson_interval(m, int(n)) for m, n in zip(s["mean"], s["n"])])
    ax.fill_between(xs, ci[:, 0], ci[:, 1], color=colour, alpha=0.15, linewidth=0)
    if clean is not None and not np.isclose(xs, 0).any():
        ax.plot([0, xs[0]], [clean, s["mean"].iloc[0]], color=colour, ls=":", lw=1)
        ax.plot([0], [clean], marker="o", mfc="white", color=colour)


def clean_top1(df: pd.DataFrame, rows: pd.DataFrame) -> float | None:
    """The clean-suite top-1 of the same model, weights, preprocessing, image set and dtype as ``rows``."""
    from robustbench_vit.results.analysis import CLEAN_PAIR_KEY, clean_top1_table

    if rows.empty or not set(CLEAN_PAIR_KEY) <= set(df.columns):
        return None
    match = clean_top1_table(df).merge(rows.iloc[:1][CLEAN_PAIR_KEY], on=CLEAN_PAIR_KEY)
    return float(match["clean_top1"].iloc[0]) if len(match) else None


def plot_occlusion(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs fraction dropped (random) and vs attention mass dropped (salient / non-salient)."""
    d = _per_condition(df, "occlusion")
    if d.empty:
        return None
    plt = _plt()
    modes = [m for m in ("random", "salient", "non_salient") if m in set(d["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        dm = d[d["mode"] == mode]
        key = "fraction" if mode == "random" else "lambda"
        for model, g in dm.groupby("model"):
            _curve(ax, None, g, key, str(model), clean_top1(df, g))
        ax.set_xlabel(
            "fraction of grid cells dropped"
            if mode == "random"
            else "fraction of attention mass dropped (lambda)"
        )
        ax.set_ylabel(ACCURACY)
        ax.set_title(f"PatchDrop {mode.replace('_', '-')} on {_dataset_of(dm)}", fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


def plot_patch_shuffle(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs shuffle grid (1x1 is the unshuffled image)."""
    d = _per_condition(df, "patch_shuffle")
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    grids = d.drop_duplicates("patches").sort_values("patches")
    pos = {p: i for i, p in enumerate(grids["patches"])}
    for model, g in d.groupby("model"):
        xs = np.array([pos[p] for p in sorted(set(g["patches"]))])
        _curve(ax, xs, g, "patches", str(model))
    ax.set_xticks(range(len(pos)), grids["grid"].tolist())
    ax.set_xlabel("shuffle grid (rows x columns of patches)")
    ax.set_ylabel(ACCURACY)
    ax.set_title(f"Patch shuffling on {_dataset_of(d)}", fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


PLOTTERS["occlusion"] = plot_occlusion
PLOTTERS["patch_shuffle"] = plot_patch_shuffle


@dataclass(frozen=True)
class Figure:
    """One written figure: its kind, the dataset it shows, and the file."""

    kind: str
    dataset: str
    path: Path


def render_figures(df: pd.DataFrame, out_dir: str | Path, kinds: list[str] | None = None) -> list[Figure]:
    """Every figure the rows support, one file per kind and dataset (``<kind>-<dataset>.png``)."""
    from robustbench_vit.storage.store import safe_name

    written = []
    for kind, fn in PLOTTERS.items():
        if kinds and kind not in kinds:
            continue
        for dataset, rows in sorted(df.groupby("dataset"), key=lambda t: str(t[0])) if len(df) else []:
            p = fn(rows, Path(out_dir) / f"{kind}-{safe_name(str(dataset))}.png")
            if p is not None:
                written.append(Figure(kind, str(dataset), p))
    return written


def figure_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a results folder's figures draw: those its leaderboard aggregates (per seed the run seen
    current last, the largest image set), one curve per board label (:func:`~robustbench_vit.results.
    leaderboard.board_rows`), so a figure never averages runs the board keeps apart."""
    from robustbench_vit.results.leaderboard import board_rows

    rows = board_rows(df)
    return rows.assign(model=rows["label"]) if len(rows) else rows


def plot_all(df: pd.DataFrame, out_dir: str | Path, kinds: list[str] | None = None) -> list[Path]:
    """Render every figure that the rows support into ``out_dir``; returns the written files."""
    return [f.path for f in render_figures(df, out_dir, kinds)]


def _heatmap_matrix(g: pd.DataFrame) -> tuple[np.ndarray, list[int]]:
    coords = sorted(set(g["u"]) | set(g["v"]))
    pos = {c: i for i, c in enumerate(coords)}
    m = np.full((len(coords), len(coords)), np.nan)
    for u, v, val in zip(g["u"], g["v"], g["value"]):
        m[pos[int(u)], pos[int(v)]] = val
    return m, coords


def plot_fourier_heatmaps(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Fourier heat maps side by side (one per model/dataset): error per frequency, low frequencies in
    the centre, vertical frequency u downwards, horizontal frequency v to the right."""
    if "u" not in df.columns:
        return None
    d = df[(df.suite == "fourier_heatmap") & (df.metric == "error")] if "suite" in df.columns else df
    if d.empty:
        return None
    plt = _plt()
    groups = list(d.groupby(["model", "dataset"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4), squeeze=False)
    im = None
    for ax, ((model, dataset), g) in zip(axes[0], groups):
        m, coords = _heatmap_matrix(g)
        half = (coords[-1] - coords[0]) / 2
        im = ax.imshow(
            m, cmap="jet", vmin=0, vmax=1, extent=(-half, half, half, -half), interpolation="nearest"
        )
        ax.set_title(f"{model}\n({dataset})", fontsize=9)
        ax.set_xlabel("horizontal frequency v (cycles per image)")
        ax.set_ylabel("vertical frequency u (cycles per image)")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="top-1 error (fraction of images)")
    return _save(fig, path, dpi=110, tight=False)


def plot_fourier_filter(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs filter radius (fraction of Nyquist) for low- and high-pass filtering."""
    d = _per_condition(df, "fourier_filter")
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, kind), g in d.groupby(["model", "kind"]):
        s = g.groupby("radius_fraction").agg(mean=("value", "mean"), n=("n", "max")).sort_index()
        (line,) = ax.plot(
            s.index,
            s["mean"],
            marker="o",
            linestyle="-" if kind == "low" else "--",
            label=f"{model} {kind}-pass",
        )
        ci = np.array([wilson_interval(m, int(n)) for m, n in zip(s["mean"], s["n"])])
        ax.fill_between(s.index, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("filter radius (fraction of the Nyquist radius)")
    ax.set_ylabel(ACCURACY)
    ax.set_title(f"Fourier filtering on {_dataset_of(d)}", fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


PLOTTERS["fourier_heatmap"] = plot_fourier_heatmaps
PLOTTERS["fourier_filter"] = plot_fourier_filter


def _comparable_complete_errors(d: pd.DataFrame) -> pd.DataFrame:
    """Mean error over severities per (corruption, model), only for cells that AlexNet's ImageNet-C errors
    may normalise: rows from the files or the make_imagenet_c table, with all five severities."""
    from robustbench_vit.metrics.mce import COMPARABLE_TABLES, SEVERITIES

    table = (
        d["param_table"].fillna("imagenet_c_files")
        if "param_table" in d
        else pd.Series("imagenet_c_files", index=d.index)
    )
    d = d[table.isin(COMPARABLE_TABLES)]
    if d.empty:
        return pd.DataFrame()
    sev = d.groupby(["model", "corruption"])["severity"].nunique()
    complete = sev[sev == len(SEVERITIES)].index
    d = d.set_index(["model", "corruption"]).loc[lambda t: t.index.isin(complete)].reset_index()
    return d.groupby(["model", "corruption"])["value"].mean().unstack("model") if len(d) else pd.DataFrame()


def plot_corruptions(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Error per corruption (mean over severities) for several models, and CE normalised by AlexNet."""
    from robustbench_vit.metrics.mce import ALEXNET_ERRORS

    d = df[
        df.suite.isin(["corruptions", "imagenet_c"])
        & (df.metric == "error")
        & ~df.condition.str.startswith("summary")
    ]
    if "corruption" in d.columns:
        d = d[d.corruption != "clean"]
    if d.empty:
        return None
    plt = _plt()
    per = d.groupby(["model", "corruption"])["value"].mean().unstack("model")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    per.plot.bar(ax=axes[0], width=0.8)
    axes[0].set_ylabel("top-1 error, mean over severities (fraction)")
    axes[0].set_title(f"Corruption error on {_dataset_of(d)}", fontsize=10)
    ce = _comparable_complete_errors(d)
    ce = ce.loc[[c for c in ce.index if c in ALEXNET_ERRORS]]
    if not ce.empty:
        (ce.div(pd.Series(ALEXNET_ERRORS), axis=0).dropna(how="all") * 100).plot.bar(ax=axes[1], width=0.8)
        axes[1].axhline(100, color="k", lw=0.8, ls="--")
    else:
        axes[1].text(
            0.5,
            0.5,
            "no complete cells comparable with ImageNet-C\n(table=imagenet_c_release or the files)",
            ha="center",
            va="center",
            transform=axes[1].transAxes,
            fontsize=9,
        )
    axes[1].set_ylabel("CE (% of AlexNet's error)")
    axes[1].set_title("Corruption error normalised by AlexNet")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60)
        if ax.get_legend_handles_labels()[0]:  # beside the bars, never over them
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path, dpi=110)


def plot_pgd(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Robust accuracy vs epsilon per model and norm, from the clean accuracy of the same images at 0."""
    d = df[(df.suite == "pgd") & (df.metric == "robust_accuracy")]
    if d.empty:
        return None
    plt = _plt()
    norms = sorted(set(d["norm"]))
    fig, axes = plt.subplots(1, len(norms), figsize=(6 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        dn = d[d["norm"] == norm]
        scale = 255 if norm == "linf" else 1
        for model, g in dn.groupby("model"):
            g = g.assign(eps_x=g["severity"] * scale)
            clean = df[(df.suite == "pgd") & (df.metric == "clean_accuracy") & (df.model == model)]
            _curve(ax, None, g, "eps_x", str(model), float(clean["value"].mean()) if len(clean) else None)
        ax.set_xlabel(
            "epsilon (/255 of the [0, 1] pixel range)" if norm == "linf" else "epsilon (L2, [0, 1] pixels)"
        )
        ax.set_ylabel("robust accuracy (fraction of images)")
        ax.set_title(f"PGD {norm} on {_dataset_of(dn)}", fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


def plot_transfer(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Fooling-rate matrix, source x target (first attack configuration found)."""
    d = df[(df.suite == "transfer") & (df.metric == "fooling_rate")]
    if d.empty:
        return None
    cond = sorted(d.condition.unique())[0]
    m = d[d.condition == cond].pivot_table(
        index="source_model", columns="model", values="value", aggfunc="last"
    )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(m.columns) + 3), max(4.0, 0.8 * len(m.index) + 2)))
    im = ax.imshow(m.values, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(m.index)), m.index)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m.values[i, j]):
                ax.text(j, i, f"{m.values[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel("target model")
    ax.set_ylabel("source model")
    ax.set_title(f"fooling rate on {_dataset_of(d)}\n{cond}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fooling rate (fraction)")
    return _save(fig, path, dpi=120)


PLOTTERS["corruptions"] = plot_corruptions
PLOTTERS["pgd"] = plot_pgd
PLOTTERS["transfer"] = plot_transfer

FIGURE_SUITES.update(
    {
        "occlusion": ("occlusion",),
        "patch_shuffle": ("patch_shuffle",),
        "fourier_heatmap": ("fourier_heatmap",),
        "fourier_filter": ("fourier_filter",),
        "corruptions": ("corruptions", "imagenet_c"),
        "pgd": ("pgd",),
        "transfer": ("transfer",),
    }
)


def _fourier_heatmap_of_run(frame: pd.DataFrame, out: Path) -> list[Path]:
    """The heat map of one finished fourier_heatmap run (written beside its results)."""
    df = frame[(frame.metric == "error") & frame["u"].notna()] if "u" in frame else frame.iloc[:0]
    if df.empty:
        return []
    name = f"fourier_heatmap-{df['model'].iloc[0]}-{df['dataset'].iloc[0]}.png".replace("/", "_")
    p = plot_fourier_heatmaps(df, out / name)
    return [p] if p else []


RUN_FIGURES["fourier_heatmap"] = _fourier_heatmap_of_run


def run_figures(suite: str, frame: pd.DataFrame, out: Path) -> list[Path]:
    """The figures a finished run of ``suite`` writes under ``out`` (none for most suites)."""
    fn = RUN_FIGURES.get(suite)
    return fn(frame, out) if fn else []


def draw_run_figures(frame: pd.DataFrame, out: str | Path) -> list[Path]:
    """The figures of every suite in a finished run's rows, under ``out/figures`` (what ``rbvit eval
    --out`` and a sweep cell draw after the run; the runner itself draws nothing)."""
    from robustbench_vit.storage.reading import params_as_columns

    paths: list[Path] = []
    if not len(frame):
        return paths
    for suite, part in frame.groupby("suite", sort=False):
        if suite in RUN_FIGURES:
            paths += run_figures(str(suite), params_as_columns(part), Path(out) / "figures")
    for path in paths:
        log.info("wrote %s", path)
    return paths


# the analysis suites' figures register themselves into PLOTTERS / FIGURE_SUITES
from robustbench_vit.results.figures import analysis as _analysis_figures  # noqa: E402, F401
