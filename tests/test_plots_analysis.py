"""`rbvit plot` kinds of the analysis suites, drawn from rows that real (tiny) runs wrote."""

from __future__ import annotations

import subprocess
import sys

import pytest

import robustbench_vit as rbvit
from robustbench_vit.results.figures.plots import FIGURE_SUITES, PLOTTERS, render_figures
from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_imagenet
from tests.test_shape_bias import PRE, _cue_conflict, _Oracle

KINDS = ("cka", "attention_distance", "imagenet_p", "shape_bias", "imagenet_o", "calibration")


def test_every_analysis_kind_is_registered_with_its_suites():
    for kind in KINDS:
        assert kind in PLOTTERS and FIGURE_SUITES[kind]


@needs_imagenet
@needs_cifar
def test_analysis_figures_from_real_rows(tmp_path, cifar_card, caplog):
    """Every analysis figure kind from real rows, with its layout checked mechanically (no text outside the
    canvas, no legend over bars, no tight_layout warning)."""
    out = tmp_path / "res"
    kw = dict(out=str(out), progress=False)
    rbvit.evaluate(
        "timm:test_vit", ["representations", "imagenet_p"], data=str(IMAGENET_SAMPLES), limit=8, batch_size=62,
        pretrained=False, suite_params={"perturbations": "translate,gaussian_noise"}, **kw,
    )  # fmt: skip
    rbvit.evaluate(
        _Oracle("shape"), "shape_bias", data=str(_cue_conflict(tmp_path / "cc")), preprocessing=PRE, **kw
    )
    rbvit.evaluate(
        str(cifar_card), ["clean", "corruptions"], data=str(CIFAR10_TEST), limit=40,
        suite_params={"corruptions": "contrast", "severities": "1,5"}, **kw,
    )  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="robustbench_vit.results.figures.base"):
        figures = render_figures(load_results(out), tmp_path / "fig")
    assert [r.getMessage() for r in caplog.records if r.name.endswith("figures.base")] == []
    kinds = {f.kind for f in figures}
    assert {"cka", "attention_distance", "imagenet_p", "shape_bias", "calibration"} <= kinds
    assert all(f.path.stat().st_size > 5000 for f in figures)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "plot",
            str(out),
            "--kind",
            "cka",
            "--figures",
            str(tmp_path / "p"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["cka-imagenet-samples.png"]


@pytest.mark.parametrize("kind", KINDS)
def test_kinds_skip_rows_they_cannot_draw(kind, tmp_path):
    import pandas as pd

    empty = pd.DataFrame({"suite": ["clean"], "metric": ["top1"], "condition": ["clean"], "value": [0.5]})
    assert PLOTTERS[kind](empty, tmp_path / "x.png") is None
