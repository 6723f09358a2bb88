"""The one GPU check script runs end to end in its CPU quick mode (CI), printing every ratio it promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import IMAGENET_SAMPLES, ROOT

RATIOS = [
    "of model-only (target >= 90%)",  # clean eval from the cache vs the model-only forward
    "sweep / 10xclean",  # occlusion sweep vs 10 clean passes
    "overall speed-up",  # torch corruptions vs imagecorruptions
    "heat map / forward per image",  # Fourier heat map
    "x fwd+bwd (target <= 1.15x)",  # PGD step
    "foolbox / ours",  # PGD vs foolbox
    "imagenet_c from files",  # ImageNet-C files vs the model-only forward
    "glass_blur severity 5",  # glass blur index maps vs the reference loop
    "package / ours time",  # AutoAttack vs the package called directly
]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_quick_mode_on_cpu_prints_every_ratio():
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_NO_PYTEST": "1",
    }  # this pytest runs -m gpu itself
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    summary = r.stdout.split("== summary", 1)[1]
    for ratio in RATIOS:
        if ratio == "package / ours time" and not IMAGENET_SAMPLES.is_dir():
            continue  # AutoAttack needs correctly classified real images: skipped without the shared data
        assert ratio in summary, f"missing ratio {ratio!r}"
    assert summary.count("of model-only (target >= 90%)") == 2  # a CNN and a ViT
