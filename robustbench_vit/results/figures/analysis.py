"""Figures of the analysis suites: representations (CKA, attention distance, block accuracy), ImageNet-P
stability, ImageNet-O detection, shape bias and calibration under shift. Registered into
:data:`robustbench_vit.results.figures.plots.PLOTTERS` like the robustness figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustbench_vit.results.figures.base import (
    FIGURE_SUITES,
    PLOTTERS,
    _dataset_of,
    _per_condition,
    _plt,
    _save,
)

__all__ = [
    "plot_cka",
    "plot_attention_distance",
    "plot_imagenet_p",
    "plot_shape_bias",
    "plot_imagenet_o",
    "plot_calibration",
]


def plot_cka(df: pd.DataFrame, path: str | Path) -> Path | None:
    """One CKA heat map (layer x layer) per model and comparison, depth increasing down and right."""
    d = _per_condition(df, "representations", "cka")
    if d.empty or "index_a" not in d:
        return None
    groups = list(d.groupby(["model", "model_b"]))
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.2), squeeze=False)
    for ax, ((model, other), g) in zip(axes[0], groups):
        m = g.pivot_table(index="index_a", columns="index_b", values="value", aggfunc="last")
        im = ax.imshow(m.values, origin="lower", cmap="magma", vmin=0, vmax=1)
        ax.set_xlabel(f"{other} layer" if other != model else "layer")
        ax.set_ylabel(f"{model} layer")
        ax.set_title(f"CKA {model} vs {other}" if other != model else f"CKA {model}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label="linear CKA")
    fig.suptitle(f"layer representations on {_dataset_of(d)}", fontsize=10)
    return _save(fig, path, dpi=110)


def plot_attention_distance(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Mean attention distance of every head vs relative depth (dots) with the per-block mean (line), and
    class-token accuracy per block."""
    att = _per_condition(df, "representations", "attention_distance")
    blocks = _per_condition(df, "representations", "top1")
    if att.empty and blocks.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for model, g in att.groupby("model"):
        line = axes[0].plot(g.groupby("depth")["value"].mean(), label=str(model))[0]
        axes[0].scatter(g["depth"], g["value"], s=8, alpha=0.4, color=line.get_color())
    axes[0].set_xlabel("relative depth (block / last block)")
    axes[0].set_ylabel("mean attention distance (input pixels)")
    axes[0].set_title("attention distance per head", fontsize=10)
    for model, g in blocks.groupby("model"):
        g = g.sort_values("depth")
        axes[1].plot(g["depth"], g["value"], marker="o", ms=3, label=str(model))
    axes[1].set_xlabel("relative depth (block / last block)")
    axes[1].set_ylabel("top-1 of the block's class token (fraction)")
    axes[1].set_ylim(0, 1)
    axes[1].set_title("class token through the final head", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(_dataset_of(att if len(att) else blocks), fontsize=10)
    return _save(fig, path, dpi=110)


def _bars(ax, table: pd.DataFrame, ylabel: str, title: str) -> None:  # type: ignore[no-untyped-def]
    table.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=45)
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plot_imagenet_p(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Flip probability and top-5 distance per perturbation type (difficulty 1) for every model."""
    fp = _per_condition(df, "imagenet_p", "flip_probability")
    if fp.empty:
        return None
    t5 = _per_condition(df, "imagenet_p", "top5_distance")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, d, label in ((axes[0], fp, "flip probability"), (axes[1], t5, "top-5 distance")):
        d = d[d["difficulty"] == d["difficulty"].min()]
        _bars(
            ax,
            d.pivot_table(index="perturbation", columns="model", values="value"),
            label,
            f"ImageNet-P {label}",
        )
    fig.suptitle(f"{_dataset_of(fp)} ({', '.join(sorted(set(fp['sequences'])))} sequences)", fontsize=10)
    return _save(fig, path, dpi=110)


def plot_shape_bias(df: pd.DataFrame, path: str | Path) -> Path | None:
    """Shape bias per model (0 = always texture, 1 = always shape; humans are near 0.96 in Geirhos et al.)."""
    d = _per_condition(df, "shape_bias", "shape_bias")
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.0 * d.model.nunique() + 3, 3.8))
    v = d.groupby("model")["value"].mean().sort_values()
    ax.barh(v.index, v.values, color="tab:purple")
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("shape bias: shape / (shape + texture) decisions")
    ax.set_title(f"cue conflict on {_dataset_of(d)}", fontsize=10)
    return _save(fig, path, dpi=110)


def plot_imagenet_o(df: pd.DataFrame, path: str | Path) -> Path | None:
    """AUPR and AUROC of MSP anomaly detection per model, with the chance AUPR (the anomalies' share)."""
    d = df[(df.suite == "imagenet_o") & df.metric.isin(["aupr", "auroc"])]
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * d.model.nunique() + 4, 3.8))
    _bars(
        ax,
        d.pivot_table(index="model", columns="metric", values="value"),
        "score",
        f"ImageNet-O ({_dataset_of(d)})",
    )
    share = df[(df.suite == "imagenet_o") & (df.metric == "ood_share")]["value"]
    if len(share):
        ax.axhline(float(share.mean()), color="k", lw=0.8, ls="--", label="chance AUPR")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
    ax.set_ylim(0, 1)
    return _save(fig, path, dpi=110)


def plot_calibration(df: pd.DataFrame, path: str | Path) -> Path | None:
    """ECE and Brier score vs corruption severity (mean over corruptions; severity 0 = the clean suite)."""
    d = df[df.suite.isin(["corruptions", "imagenet_c"]) & df.metric.isin(["ece", "brier"])]
    d = d[~d.condition.str.startswith("summary")]
    if d.empty or "severity" not in d:
        return None
    clean = df[(df.suite == "clean") & df.metric.isin(["ece", "brier"])].assign(severity=0.0)
    both = pd.concat([clean, d])
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in (
        (axes[0], "ece", "expected calibration error"),
        (axes[1], "brier", "Brier score"),
    ):
        m = both[both.metric == metric]
        for model, g in m.groupby("model"):
            s = g.groupby("severity")["value"].mean()
            ax.plot(s.index.astype(float), s.values, marker="o", ms=3, label=str(model))
        ax.set_xlabel("corruption severity (0: clean)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    counts = f"clean: {int(clean.n.max())} images, corruption cells: {int(d.n.max())}" if len(clean) else ""
    mixed = len(clean) and int(clean.n.max()) != int(d.n.max())  # say so when the points differ in images
    title = f"calibration under corruption on {_dataset_of(d)}" + (f"\n({counts} images)" if mixed else "")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=110)


for _kind, _fn, _suites in (
    ("cka", plot_cka, ("representations",)),
    ("attention_distance", plot_attention_distance, ("representations",)),
    ("imagenet_p", plot_imagenet_p, ("imagenet_p",)),
    ("shape_bias", plot_shape_bias, ("shape_bias",)),
    ("imagenet_o", plot_imagenet_o, ("imagenet_o",)),
    ("calibration", plot_calibration, ("corruptions", "imagenet_c")),
):
    PLOTTERS[_kind] = _fn
    FIGURE_SUITES[_kind] = _suites
