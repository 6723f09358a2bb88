"""Standard figures from result rows (matplotlib, Agg backend, PNG files).

Each function takes the DataFrame of :func:`robustbench_vit.store.load_results` and draws one
curve per model, so several models appear on one figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_occlusion", "plot_patch_shuffle", "plot_all", "PLOTTERS"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, *, dpi: int, tight: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Lay out (optionally), write the PNG (creating its folder) and free the figure."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _per_condition(df: pd.DataFrame, suite: str) -> pd.DataFrame:
    d = df[(df.suite == suite) & (df.metric == "top1") & ~df.condition.str.startswith("summary")]
    return d


def plot_occlusion(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs drop fraction (random) and vs attention mass (salient / non-salient), mean +- std over repeats."""
    d = _per_condition(df, "occlusion")
    if d.empty:
        return None
    plt = _plt()
    modes = [m for m in ("random", "salient", "non_salient") if m in set(d["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        dm = d[d["mode"] == mode]
        key = "fraction" if mode == "random" else "lambda"
        for (model, dataset), g in dm.groupby(["model", "dataset"]):
            s = g.groupby(key)["value"].agg(["mean", "std"]).sort_index()
            ax.errorbar(
                s.index,
                s["mean"],
                yerr=s["std"].fillna(0),
                marker="o",
                capsize=3,
                label=f"{model} ({dataset})",
            )
        ax.set_xlabel("fraction of cells dropped" if mode == "random" else "attention mass lambda")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(f"PatchDrop: {mode.replace('_', '-')}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


def plot_patch_shuffle(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs number of shuffled patches (grid), mean +- std over repeats."""
    d = _per_condition(df, "patch_shuffle")
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    grids = d.drop_duplicates("patches").sort_values("patches")
    pos = {p: i for i, p in enumerate(grids["patches"])}
    for (model, dataset), g in d.groupby(["model", "dataset"]):
        s = g.groupby("patches")["value"].agg(["mean", "std"]).sort_index()
        ax.errorbar(
            [pos[p] for p in s.index],
            s["mean"],
            yerr=s["std"].fillna(0),
            marker="o",
            capsize=3,
            label=f"{model} ({dataset})",
        )
    ax.set_xticks(range(len(pos)), grids["grid"].tolist())
    ax.set_xlabel("shuffle grid")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Patch shuffling")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


PLOTTERS = {"occlusion": plot_occlusion, "patch_shuffle": plot_patch_shuffle}


def plot_all(df: pd.DataFrame, out_dir: str | Path, kinds: list[str] | None = None) -> list[Path]:
    """Render every figure that the rows support into ``out_dir``; returns the written files."""
    written = []
    for kind, fn in PLOTTERS.items():
        if kinds and kind not in kinds:
            continue
        p = fn(df, Path(out_dir) / f"{kind}.png")
        if p is not None:
            written.append(p)
    return written


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
        ax.set_xlabel("frequency v")
        ax.set_ylabel("frequency u")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="error")
    return _save(fig, path, dpi=110, tight=False)


def plot_fourier_filter(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Top-1 vs filter radius (fraction of Nyquist) for low- and high-pass filtering."""
    d = _per_condition(df, "fourier_filter")
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, _dataset, kind), g in d.groupby(["model", "dataset", "kind"]):
        s = g.groupby("radius_fraction")["value"].mean().sort_index()
        ax.plot(
            s.index,
            s.values,
            marker="o",
            linestyle="-" if kind == "low" else "--",
            label=f"{model} {kind}-pass",
        )
    ax.set_xlabel("radius / Nyquist radius")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=120)


PLOTTERS["fourier_heatmap"] = plot_fourier_heatmaps
PLOTTERS["fourier_filter"] = plot_fourier_filter


def _comparable_complete_errors(d: pd.DataFrame) -> pd.DataFrame:
    """Mean error over severities per (corruption, model), only for cells that AlexNet's ImageNet-C errors
    may normalise: rows from the files or the make_imagenet_c table, with all five severities."""
    from robustbench_vit.mce import COMPARABLE_TABLES, SEVERITIES

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
    from robustbench_vit.mce import ALEXNET_ERRORS

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
    axes[0].set_ylabel("error (mean over severities)")
    axes[0].set_title("Corruption error")
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
    axes[1].set_ylabel("CE (% of AlexNet)")
    axes[1].set_title("Corruption error normalised by AlexNet")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60)
        ax.legend(fontsize=8)
    return _save(fig, path, dpi=110)


def plot_pgd(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Robust accuracy vs epsilon per model and norm."""
    d = df[(df.suite == "pgd") & (df.metric == "robust_accuracy")]
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, norm), g in d.groupby(["model", "norm"]):
        s = g.groupby("severity")["value"].mean().sort_index()
        ax.plot(s.index * (255 if norm == "linf" else 1), s.values, marker="o", label=f"{model} ({norm})")
    ax.set_xlabel("epsilon (x255 for L-inf)")
    ax.set_ylabel("robust accuracy")
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
    fig, ax = plt.subplots(figsize=(1.4 * len(m.columns) + 3, 0.8 * len(m.index) + 2))
    im = ax.imshow(m.values, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(m.index)), m.index)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m.values[i, j]):
                ax.text(j, i, f"{m.values[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    ax.set_title(f"fooling rate: {cond}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path, dpi=120)


PLOTTERS["corruptions"] = plot_corruptions
PLOTTERS["pgd"] = plot_pgd
PLOTTERS["transfer"] = plot_transfer
