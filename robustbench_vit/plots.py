"""Standard figures from result rows (matplotlib, Agg backend, PNG files).

Each function takes the DataFrame of :func:`robustbench_vit.store.load_results` and draws one
curve per model, so several models appear on one figure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["plot_occlusion", "plot_patch_shuffle", "plot_all", "PLOTTERS"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
            ax.errorbar(s.index, s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3, label=f"{model} ({dataset})")
        ax.set_xlabel("fraction of cells dropped" if mode == "random" else "attention mass lambda")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(f"PatchDrop: {mode.replace('_', '-')}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
        ax.errorbar([pos[p] for p in s.index], s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3,
                    label=f"{model} ({dataset})")  # fmt: skip
    ax.set_xticks(range(len(pos)), grids["grid"].tolist())
    ax.set_xlabel("shuffle grid")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Patch shuffling")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
