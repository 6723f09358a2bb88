"""Figures: one file per dataset, Wilson bands, the clean point, axis labels with units."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from robustbench_vit.results.figures import plots
from robustbench_vit.results.leaderboard import wilson_interval


def _rows(dataset: str, model: str, values: dict[float, float], n: int = 100) -> list[dict]:
    common = dict(
        model=model,
        arch=f"{model}.arch",
        weights="w",
        preprocessing="p",
        mean="[0.5]",
        std="[0.5]",
        image_set=f"set-{dataset}",
        dtype="fp32",
        dataset=dataset,
        finished_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        n=n,
    )
    rows = [
        dict(common, suite="clean", condition="clean", metric="top1", value=0.9, mode=None, fraction=None)
    ]
    for frac, v in values.items():
        rows.append(
            dict(
                common,
                suite="occlusion",
                condition=f"random/fraction={frac}",
                metric="top1",
                value=v,
                mode="random",
                fraction=frac,
            )
        )
    return rows


@pytest.fixture
def captured(monkeypatch):
    figs = {}

    def keep(fig, path, **_):
        figs[str(path)] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    return figs


def test_one_file_per_dataset_with_band_clean_point_and_units(tmp_path, captured):
    df = pd.DataFrame(
        _rows("cifar10", "vit", {0.25: 0.6, 0.5: 0.3}, n=30)
        + _rows("imagenet-val", "vit", {0.25: 0.7, 0.5: 0.5})
    )
    figs = plots.render_figures(df, tmp_path, ["occlusion"])
    assert [(f.kind, f.dataset, f.path.name) for f in figs] == [
        ("occlusion", "cifar10", "occlusion-cifar10.png"),
        ("occlusion", "imagenet-val", "occlusion-imagenet-val.png"),
    ]
    ax = captured[str(tmp_path / "occlusion-cifar10.png")].axes[0]
    assert "cifar10" in ax.get_title() and "imagenet" not in ax.get_title()
    assert "fraction" in ax.get_xlabel() and "fraction of images" in ax.get_ylabel()
    band = ax.collections[-1].get_paths()[0].vertices  # the Wilson band of the only model
    lo, hi = wilson_interval(0.6, 30)
    assert band[:, 1].min() == pytest.approx(min(lo, wilson_interval(0.3, 30)[0]))
    assert band[:, 1].max() == pytest.approx(hi)
    points = [tuple(line.get_xydata()[0]) for line in ax.lines if len(line.get_xydata()) == 1]
    assert (0.0, 0.9) in points  # the clean top-1 of the same model and images, at fraction 0


def test_no_clean_point_from_other_images(tmp_path, captured):
    rows = _rows("cifar10", "vit", {0.5: 0.3})
    rows[0]["image_set"] = "other"
    plots.render_figures(pd.DataFrame(rows), tmp_path, ["occlusion"])
    ax = captured[str(tmp_path / "occlusion-cifar10.png")].axes[0]
    assert not [line for line in ax.lines if (line.get_xydata()[:, 0] == 0).any()]


def test_report_captions_render_inline_markdown():
    from robustbench_vit.results.report import inline_markdown

    html = inline_markdown("_ranked by `summary/random/fraction=0.5 top1_mean`; seeds 0 <all>_")
    assert (
        html == "<em>ranked by <code>summary/random/fraction=0.5 top1_mean</code>; seeds 0 &lt;all&gt;</em>"
    )
    assert inline_markdown("top1_mean and error_low_freq") == "top1_mean and error_low_freq"
