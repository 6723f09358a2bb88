"""The imagenet_o suite: OOD scores against the reference's definitions, a fixture in the release's
layout checked against an independent evaluation loop, and its input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import robustbench_vit as rbvit
from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.metrics.ood import aupr, auroc, fpr_at_recall
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet


def _reference_fpr(y_true: np.ndarray, y_score: np.ndarray, recall_level: float) -> float:
    """The natural-adversarial-examples ``fpr_and_fdr_at_recall``, restated step by step."""
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    thr = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true)[thr]
    fps = 1 + thr - tps
    recall = tps / tps[-1]
    last = tps.searchsorted(tps[-1])
    sl = slice(last, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))


@pytest.mark.parametrize("seed", range(6))
def test_fpr95_matches_the_reference_rule(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.25
    s = np.round(rng.normal(size=400) + 1.2 * y, 1)  # rounded: many ties
    assert fpr_at_recall(y, s, 0.95) == pytest.approx(_reference_fpr(y.astype(int), s, 0.95))


def test_ood_scores_on_known_cases():
    y = np.array([1, 1, 0, 0, 0], dtype=bool)
    assert auroc(y, np.array([5, 4, 3, 2, 1])) == 1.0 and aupr(y, np.array([5, 4, 3, 2, 1])) == 1.0
    assert auroc(y, np.array([1, 2, 3, 4, 5])) == 0.0
    assert fpr_at_recall(y, np.array([5, 4, 3, 2, 1])) == 0.0
    assert auroc(y, np.zeros(5)) == 0.5 and aupr(y, np.zeros(5)) == pytest.approx(0.4)  # all tied: chance
    assert np.isnan(auroc(np.ones(3, bool), np.arange(3.0)))  # one class only: undefined


def _ood_fixture(root: Path, wnids: list[str]) -> Path:
    """ImageNet-O layout (<wnid>/*.jpg): under each wnid, another class's photo flipped and tinted, so the
    two sides differ but stay photographs."""
    for k, w in enumerate(wnids):
        src = next((IMAGENET_SAMPLES / wnids[(k + 1) % len(wnids)]).iterdir())
        img = Image.open(src).convert("RGB").transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        arr = np.asarray(img).astype(np.float32) * np.array([1.0, 0.6, 0.6])
        (root / w).mkdir(parents=True)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / w / f"ood_{k}.jpg", quality=95)
    return root


@needs_imagenet
def test_imagenet_o_fixture_against_an_independent_loop(tmp_path):
    wnids = sorted(p.name for p in IMAGENET_SAMPLES.iterdir())[::50]  # 20 classes
    ood = _ood_fixture(tmp_path / "imagenet-o", wnids)
    from sklearn.metrics import average_precision_score, roc_auc_score
    from torchvision import transforms as T

    from robustbench_vit.data.labels import get_label_space
    from robustbench_vit.models.loading import load_model

    loaded = load_model("timm:test_vit", device="cpu", pretrained=False)
    df = rbvit.evaluate(
        loaded,
        "imagenet_o",
        data=str(ood),
        suite_params={"clean_data": str(IMAGENET_SAMPLES)},
        batch_size=16,
        progress=False,
        out=str(tmp_path / "res"),
    )
    got = df.set_index("metric").value
    assert set(df.n) == {40}

    # independent loop: PIL + torchvision transforms, the bare network, a 20-way softmax, scikit-learn
    dc = loaded.data_config
    tf = T.Compose(
        [
            T.Resize(dc.resize_size[0], interpolation=T.InterpolationMode(dc.interpolation)),
            T.CenterCrop(dc.image_size),
            T.ToTensor(),
            T.Normalize(dc.mean, dc.std),
        ]
    )
    space = get_label_space("imagenet1k")
    cols = [space.wnids.index(w) for w in wnids]
    files = [next((ood / w).iterdir()) for w in wnids] + [
        next((IMAGENET_SAMPLES / w).iterdir()) for w in wnids
    ]
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        logits = loaded.net(x)
    msp = logits[:, cols].softmax(1).max(1).values.numpy()
    y = np.r_[np.ones(20), np.zeros(20)]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, -msp), abs=0.01)
    assert got["aupr"] == pytest.approx(average_precision_score(y, -msp), abs=0.01)
    assert got["ood_share"] == 0.5


@needs_imagenet
def test_imagenet_o_input_errors(tmp_path):
    ood = tmp_path / "o"
    (ood / "not_a_wnid").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(ood / "not_a_wnid" / "a.png")
    kw = dict(pretrained=False, progress=False)
    with pytest.raises(ConfigError, match="clean_data"):
        rbvit.evaluate("timm:test_vit", "imagenet_o", data=str(ood), **kw)
    with pytest.raises(DataError, match="not_a_wnid"):
        rbvit.evaluate(
            "timm:test_vit",
            "imagenet_o",
            data=str(ood),
            suite_params={"clean_data": str(IMAGENET_SAMPLES)},
            **kw,
        )


class _Confident(torch.nn.Module):
    """Logits whose scale follows the image's brightness: bright (in-distribution) images get a confident
    softmax, dark ones (the fixture's anomalies) a flat one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        base = torch.randn(1000, generator=g)
        return x.mean((1, 2, 3))[:, None] * 40 * base[None]


def test_a_detector_that_separates_perfectly_scores_one(tmp_path):
    wnids = get_label_space_wnids()[:6]
    for k, w in enumerate(wnids):
        for root, level in ((tmp_path / "o", 10), (tmp_path / "val", 240)):
            (root / w).mkdir(parents=True)
            Image.fromarray(np.full((16, 16, 3), level + k, np.uint8)).save(root / w / f"{k}.png")
    pre = {
        "input_size": (3, 16, 16),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0,) * 3,
        "std": (1,) * 3,
    }
    df = rbvit.evaluate(
        _Confident(), "imagenet_o", data=str(tmp_path / "o"), preprocessing=pre, progress=False,
        suite_params={"clean_data": str(tmp_path / "val")},
    )  # fmt: skip
    v = df.set_index("metric").value
    assert v["auroc"] == 1.0 and v["aupr"] == 1.0 and v["fpr95"] == 0.0 and v["ood_share"] == 0.5


def get_label_space_wnids() -> list[str]:
    from robustbench_vit.data.labels import get_label_space

    return list(get_label_space("imagenet1k").wnids)
