"""The imagenet_c suite on an on-disk ImageNet-C fixture built from the shared samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_vit.store import load_results
from tests.helpers import IMAGENET_SAMPLES, REFERENCE, needs_imagenet

CSV = REFERENCE / "robustbench_imagenet_c_unaggregated.csv"
RBVIT = [sys.executable, "-m", "robustbench_vit.cli"]


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
