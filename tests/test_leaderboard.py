"""The leaderboard never mixes incomparable runs: image sets, weights, seeds, random weights, ordering."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from robustbench_vit.results.leaderboard import build_leaderboard, natural_key
from robustbench_vit.results.tables import render_markdown
from robustbench_vit.storage.reading import rows_to_frame

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def row(
    model="m",
    value=0.5,
    *,
    suite="clean",
    condition="clean",
    metric="top1",
    n=100,
    seed=0,
    minute=0,
    weights="timm:m.tag",
    image_set="A",
    n_images=100,
    preprocessing="resize 256 / crop 224 bilinear (center)",
    suite_cfg=None,
    family="cnn",
    dtype="fp32",
    listing=None,
    data_root="/data",
):
    cfg = {"suite": suite_cfg or {"suite": suite, "version": 1}}
    t = T0 + dt.timedelta(minutes=minute)
    return {
        "run_id": f"{model}-{image_set}-{seed}-{weights}",
        "model": model,
        "family": family,
        "arch": model,
        "source": "timm",
        "weights": weights,
        "suite": suite,
        "suite_version": 1,
        "dataset": "imagenet-val",
        "data_root": data_root,
        "listing": listing,
        "condition": condition,
        "severity": None,
        "params": "{}",
        "metric": metric,
        "value": value,
        "n": n,
        "higher_is_better": True,
        "source_model": None,
        "seed": seed,
        "batch_size": 8,
        "limit": None,
        "image_set": image_set,
        "n_images": n_images,
        "preprocessing": preprocessing,
        "input_size": 224,
        "resize_size": 256,
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "crop_mode": "center",
        "mean": "[0.5]",
        "std": "[0.5]",
        "preprocessing_source": "timm",
        "device": "cpu",
        "dtype": dtype,
        "rbvit_version": "x",
        "torch_version": "x",
        "timm_version": "x",
        "started_at": t,
        "finished_at": t,
        "config": json.dumps(cfg),
    }


def board(rows, **kw) -> pd.DataFrame:
    return build_leaderboard(rows_to_frame(rows), **kw)


def test_a_smaller_later_run_never_replaces_a_larger_image_set():
    b = board(
        [
            row(value=0.70, image_set="full", n=1000, n_images=1000, minute=0),
            row(value=0.90, image_set="lim100", n=100, n_images=100, minute=5),
        ]
    )
    assert len(b) == 1 and b["value"].iat[0] == 0.70 and b["n_images"].iat[0] == 1000
    assert b["image_sets_available"].iat[0] == 2
    every = board(
        [
            row(value=0.70, image_set="full", n=1000, n_images=1000),
            row(value=0.90, image_set="lim100", minute=5),
        ],
        all_variants=True,
    )
    assert sorted(every["value"]) == [0.70, 0.90] and every["label"].nunique() == 2
    md = render_markdown(b)
    assert "1000 images (largest of 2 image sets)" in md


def test_a_table_of_models_on_different_image_sets_says_so():
    """Two models of one table evaluated on different images (a labels file edited between their runs
    gives one folder two image sets): the caption names each model's set and says the ranks compare
    different images; on one shared set it says neither."""
    two = render_markdown(
        board([row("a", 0.7, image_set="set1aaaaaaa"), row("b", 0.6, image_set="set2bbbbbbb")])
    )
    assert "a: 100 images (set set1aaaa), b: 100 images (set set2bbbb)" in two
    assert "NOT one image set: ranks compare models on different images" in two
    one = render_markdown(board([row("a", 0.7), row("b", 0.6)]))
    assert "a: 100 images, b: 100 images;" in one and "NOT one image set" not in one


def test_a_table_of_models_that_ran_a_condition_otherwise_says_so():
    """PGD's step count is not in its condition's name: a model attacked with 1 step and one with 50 are
    ranked in one table, and the caption says which settings differ; an epsilon list chosen otherwise
    (which conditions ran) and a source named otherwise are not settings."""
    pgd = dict(suite="pgd", condition="linf/eps=4/255", metric="robust_accuracy")

    def cfg(steps, epsilons=("4/255",), source="a"):
        return {"suite": "pgd", "version": 1, "steps": steps, "epsilons": list(epsilons), "source": source}

    other = render_markdown(
        board([row("a", 0.3, suite_cfg=cfg(1), **pgd), row("b", 0.1, suite_cfg=cfg(50), **pgd)])
    )
    assert "NOT one protocol: `linf/eps=4/255` ran with other settings (`steps` a: 1, b: 50)" in other
    alike = board(
        [
            row("a", 0.3, suite_cfg=cfg(50, ("4/255", "8/255"), "x"), **pgd),
            row("b", 0.1, suite_cfg=cfg(50, source="timm:x"), **pgd),
        ]
    )
    assert "NOT one protocol" not in render_markdown(alike)


def test_a_run_of_a_folder_listed_otherwise_since_is_not_the_current_number():
    """An image deleted from the folder, then a rerun: the 999-image run is the folder's number now, not the
    larger run that read a file which no longer exists. A --limit run of the folder as it is listed now
    still never replaces its full run; another folder's images are another entry, labelled by folder (a
    larger folder of other images that the layout names alike, ImageNet-Sketch in wnid folders beside
    ImageNet val, never stands for this one), and a copy of the same images is the same entry."""
    full = row(value=0.70, image_set="full", n=1000, n_images=1000, listing="L1")
    after = row(value=0.72, image_set="less", n=999, n_images=999, listing="L2", minute=5)
    quick = row(value=0.90, image_set="q", n=100, n_images=100, listing="L2", minute=9)
    b = board([full, after, quick])
    assert len(b) == 1 and b["value"].iat[0] == 0.72 and b["n_images"].iat[0] == 999
    assert len(board([full, after, quick], all_variants=True)) == 3  # --all shows every run
    elsewhere = row(value=0.60, image_set="big", n=5000, n_images=5000, listing="X", data_root="/other")
    both = board([full, after, elsewhere]).sort_values("value")
    assert both["value"].tolist() == [0.60, 0.72]
    assert [label.split(" in ")[-1] for label in both["label"]] == ["/other]", f"{full['data_root']}]"]
    copy = row(value=0.72, image_set="less", n=999, n_images=999, listing="C", data_root="/copy", minute=7)
    assert board([full, after, copy])["value"].tolist() == [0.72]  # one image set, read from two folders


def test_a_run_resumed_after_its_folder_changed_keeps_its_reused_rows():
    """An ImageNet-C folder gains a corruption: the rerun (same run id) reuses the old cells, whose rows
    record the old list, and computes the new one. The run's list is its newest row's: no row is dropped."""
    old = row(value=0.5, condition="a/1", listing="L1", minute=0)
    new = row(value=0.4, condition="b/1", listing="L2", minute=9)
    b = board([old, new])
    assert sorted(b.condition) == ["a/1", "b/1"]


def test_seeds_are_aggregated_not_overwritten():
    b = board([row(value=0.4, seed=0), row(value=0.6, seed=1, minute=1), row(value=0.5, seed=1, minute=2)])
    assert len(b) == 1
    r = b.iloc[0]
    assert r["value"] == pytest.approx(0.45) and r["n_seeds"] == 2 and r["seeds"] == "0,1"
    assert r["value_std"] == pytest.approx(pd.Series([0.4, 0.5]).std())
    single = board([row(value=0.4)]).iloc[0]
    assert single["n_seeds"] == 1 and pd.isna(single["value_std"])


def test_different_weights_under_one_name_are_two_entries():
    b = board(
        [
            row("resnet50", 0.76, weights="timm:resnet50.tv_in1k"),
            row("resnet50", 0.80, weights="timm:resnet50.a1_in1k", minute=1),
        ]
    )
    assert len(b) == 2 and set(b["label"]) == {
        "resnet50 [timm:resnet50.tv_in1k]",
        "resnet50 [timm:resnet50.a1_in1k]",
    }


def test_different_preprocessing_or_suite_config_are_not_mixed():
    b = board(
        [
            row(preprocessing="resize 256 / crop 224 bilinear (center)", value=0.7),
            row(preprocessing="resize 224 / crop 224 bicubic (squash)", value=0.6, minute=1),
        ]
    )
    assert len(b) == 2
    c = board(
        [
            row(suite_cfg={"suite": "occlusion", "fill": "zero"}, value=0.3),
            row(suite_cfg={"suite": "occlusion", "fill": "mean"}, value=0.5, minute=1),
        ]
    )
    assert len(c) == 2 and all("config" in lab for lab in c["label"])


def test_two_precisions_are_two_entries_never_two_seeds():
    """A bf16 run of seed 1 beside an fp32 run of seed 0 used to be averaged as two seeds, its precision
    error passing for seed variance; each precision is its own labelled entry."""
    b = board([row(value=0.70, seed=0), row(value=0.68, seed=1, dtype="bf16", minute=1)])
    assert len(b) == 2 and set(b["n_seeds"]) == {1}
    assert dict(zip(b["label"], b["value"])) == {"m [fp32]": 0.70, "m [bf16]": 0.68}
    assert set(board([row(value=0.7), row(value=0.6, seed=1, minute=1)])["label"]) == {"m"}


def test_random_weights_are_marked():
    b = board([row("test_vit", 0.001, weights="random"), row("effnet", 0.77, weights="pypi:x", minute=1)])
    marked = dict(zip(b["model"], b["label"]))
    assert marked["test_vit"] == "test_vit (random weights)" and marked["effnet"] == "effnet"
    assert b.set_index("model")["random_weights"].to_dict() == {"test_vit": True, "effnet": False}


def test_patch_shuffle_columns_sort_numerically_and_ranking_skips_all_zero_columns():
    rows = []
    for i, (m, vals) in enumerate({"a": (0.0, 0.2, 0.1), "b": (0.0, 0.1, 0.3)}.items()):
        for g, v in zip((2, 14, 4), vals):
            rows.append(
                row(
                    m,
                    v,
                    suite="patch_shuffle",
                    condition=f"summary/grid={g}x{g}",
                    metric="top1_mean",
                    minute=i,
                )
            )
    md = render_markdown(board(rows))
    header = next(line for line in md.splitlines() if line.startswith("| label"))
    assert header.index("grid=2x2") < header.index("grid=4x4") < header.index("grid=14x14")
    assert "ranked by `summary/grid=4x4 top1_mean`" in md  # grid=2x2 is 0 for everyone
    table = [line for line in md.splitlines() if line.startswith("| b ") or line.startswith("| a ")]
    assert table[0].startswith("| b ")


def test_natural_key():
    assert sorted(["grid=14x14", "grid=2x2", "grid=4x8"], key=natural_key) == [
        "grid=2x2",
        "grid=4x8",
        "grid=14x14",
    ]
    radii = ["low/r=1", "low/r=0.5", "high/r=0.25", "low/r=0.0625", "low/r=0.125", "low/r=1e-05", "low/r=2"]
    assert sorted(radii, key=natural_key) == [
        "high/r=0.25",
        "low/r=1e-05",
        "low/r=0.0625",
        "low/r=0.125",
        "low/r=0.5",
        "low/r=1",
        "low/r=2",
    ]
    assert sorted(["freq=(2,0)", "freq=(-3,0)", "freq=(0,-1)", "freq=(0,1)"], key=natural_key) == [
        "freq=(-3,0)",
        "freq=(0,-1)",
        "freq=(0,1)",
        "freq=(2,0)",
    ]
    assert (
        sorted(["linf/eps=8/255", "linf/eps=1/255", "linf/eps=16/255"], key=natural_key)[-1]
        == "linf/eps=16/255"
    )


def test_figures_draw_the_rows_the_board_aggregates_one_curve_per_label():
    """A figure never averages what the board keeps apart: a smaller later image set, an older rerun of
    one seed, two weights under one name."""
    from robustbench_vit.results.figures.plots import figure_rows
    from robustbench_vit.results.leaderboard import board_rows

    rows = rows_to_frame(
        [
            row(value=0.70, image_set="full", n=1000, n_images=1000),
            row(value=0.60, image_set="full", n=1000, n_images=1000, minute=1),  # a rerun of seed 0
            row(value=0.90, image_set="lim100", minute=5),
            row(value=0.80, weights="timm:m.other", minute=6),
        ]
    )
    kept = board_rows(rows).sort_values("value")
    assert kept["value"].tolist() == [0.60, 0.80]
    assert kept["label"].tolist() == ["m [timm:m.tag]", "m [timm:m.other]"]
    drawn = figure_rows(rows)
    assert sorted(drawn["model"]) == ["m [timm:m.other]", "m [timm:m.tag]"]
    assert board_rows(rows.iloc[:0]).empty
