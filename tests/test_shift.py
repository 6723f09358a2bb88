"""Distribution-shift suites: mCE against a published table, ImageNet-C / -A / -R on-disk fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustbench_vit.data.registry import subset_synsets
from robustbench_vit.labels import get_label_space
from robustbench_vit.mce import (
    ALEXNET_ERRORS,
    BENCHMARK_CORRUPTIONS,
    MissingMeasurementError,
    mce,
    relative_mce,
)
from robustbench_vit.store import load_results
from tests.helpers import IMAGENET_SAMPLES, REFERENCE, needs_effnet, needs_imagenet

CSV = REFERENCE / "robustbench_imagenet_c_unaggregated.csv"
RBVIT = [sys.executable, "-m", "robustbench_vit.cli"]


def _errors(row: pd.Series) -> dict[tuple[str, int], float]:
    return {(c, int(s)): 1.0 - float(v) for (c, s), v in row.items()}


@pytest.mark.skipif(not CSV.is_file(), reason="reference table absent")
def test_mce_of_robustbench_standard_r50():
    table = pd.read_csv(CSV, header=[0, 1], index_col=0)
    r50 = _errors(table.loc["Standard_R50"])
    assert round(100 * mce(r50), 2) == 76.37
    alexnet_row = _errors(table.loc["AlexNet"])
    assert round(100 * mce(r50, alexnet=alexnet_row), 2) == 76.38


def test_mce_refuses_missing_cells():
    errors = {(c, s): 0.5 for c in BENCHMARK_CORRUPTIONS for s in range(1, 6)}
    assert mce(errors) == pytest.approx(np.mean([0.5 / ALEXNET_ERRORS[c] for c in BENCHMARK_CORRUPTIONS]))
    del errors[("fog", 3)]
    with pytest.raises(MissingMeasurementError, match="fog/3"):
        mce(errors)
    with pytest.raises(MissingMeasurementError):
        relative_mce(errors, clean_error=0.2)


def test_relative_mce_zero_when_no_degradation():
    errors = {(c, s): 0.3 for c in BENCHMARK_CORRUPTIONS for s in range(1, 6)}
    assert relative_mce(errors, clean_error=0.3) == 0.0


@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_timm_subset_indices_match_the_wnid_list(name):
    wnids, idx = subset_synsets(name)
    space = get_label_space("imagenet1k")
    assert len(wnids) == len(idx) == 200 and idx == sorted(idx)
    assert [space.wnids[i] for i in idx] == wnids


def _imagenet_c_fixture(root: Path, n: int = 12) -> Path:
    from imagecorruptions import corrupt

    files = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::83][:n]
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224))
        arr = np.asarray(img)
        for c in ("brightness", "gaussian_noise"):
            for sev in (1, 3, 5):
                out = root / c / str(sev) / f.parent.name
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.uint8(corrupt(arr, corruption_name=c, severity=sev))).save(
                    out / f.name, quality=85
                )
    return root


@needs_imagenet
def test_imagenet_c_fixture_end_to_end(tmp_path):
    root = _imagenet_c_fixture(tmp_path / "imagenet-c")
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            "imagenet_c",
            "--data",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "-p",
            f"clean_data={IMAGENET_SAMPLES}",
            "--limit",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path / "out")
    cells = df[(df.metric == "error") & (df.corruption != "clean")]
    assert (
        len(cells) == 6
        and set(cells.corruption) == {"brightness", "gaussian_noise"}
        and (cells.n == 12).all()
    )
    assert len(set(df.preprocessing)) == 1 and df.preprocessing.iloc[0].startswith(
        "resize 160 / crop 160"
    )  # crop only
    clean = df[(df.metric == "error") & (df.corruption == "clean")]
    assert len(clean) == 1 and not json.loads(clean.params.iloc[0])["clean_preprocessing"].startswith(
        "resize 160 "
    )
    assert "mce" not in set(df.metric), "mCE must not be computed from 2 of 15 corruptions"
    assert {"mean_corruption_accuracy"} <= set(df.metric)
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            "imagenet_c",
            "--data",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 4 and "not found" in r.stderr


def _ar_fixture(root: Path, name: str) -> Path:
    wnids, _ = subset_synsets(name)
    for w in wnids:
        (root / w).mkdir(parents=True)
        src = next((IMAGENET_SAMPLES / w).iterdir())
        (root / w / src.name).symlink_to(src)
    return root


@needs_imagenet
@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_ar_fixture_masked_and_unmasked_refused(tmp_path, name):
    root = _ar_fixture(tmp_path / name, name)
    suite = name.replace("-", "_")
    r = subprocess.run(
        [*RBVIT, "eval", "-m", "timm:test_resnet", "--random-weights", "-s", "clean", "--data", str(root)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and f"--suite {suite}" in r.stderr
    r = subprocess.run(
        [
            *RBVIT,
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            suite,
            "--data",
            str(root),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert {x["metric"] for x in rows} == {"top1", "top5"} and all(x["n"] == 200 for x in rows)


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_imagenet_a_layout_with_real_weights_and_clean_diff(tmp_path):
    import robustbench_vit as rbvit

    root = _ar_fixture(tmp_path / "a", "imagenet-a")
    df = rbvit.evaluate(
        "efficientnet_lite0",
        "imagenet_a",
        data=str(root),
        out=str(tmp_path / "o"),
        suite_params={"clean_data": str(IMAGENET_SAMPLES)},
    )
    top1 = df[df.metric == "top1"].set_index("condition")["value"]
    # the fixture holds the very clean images of the 200 classes: same accuracy, diff 0
    assert top1["imagenet-a"] == pytest.approx(top1["clean-200"])
    assert df.set_index("metric").loc["top1_diff", "value"] == pytest.approx(0.0)
    assert top1["imagenet-a"] > 0.7
