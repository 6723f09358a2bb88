"""Suites that score a subset of ImageNet's classes (ImageNet-A/-R's 200, ImageNet-O's, shape bias's 16
categories) find a model's outputs by WordNet id: a model whose card lists the 1000 classes in its own order
scores exactly as the same network in ImageNet-1k's order."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import robustbench_vit as rbvit
from robustbench_vit.data.labels import get_label_space
from robustbench_vit.errors import ConfigError
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet
from tests.test_imagenet_ar import _ar_fixture
from tests.test_imagenet_o import _ood_fixture
from tests.test_shape_bias import _cue_conflict

WNIDS = get_label_space("imagenet1k").wnids
#: a class order of the model's own: ImageNet's reversed, then pairs swapped
PERM = [i ^ 1 for i in range(999, -1, -1)]


class _Reordered(nn.Module):
    """The same network with its outputs in another class order."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("order", torch.tensor(PERM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.order]


def _pair(size: int) -> tuple[nn.Module, nn.Module, dict, dict]:
    torch.manual_seed(0)
    net = timm.create_model(
        "test_vit", pretrained=False, num_classes=1000, img_size=size, patch_size=size // 4
    )
    pre = {"input_size": [3, size, size], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0}
    own = {**pre, "label_space": [WNIDS[i] for i in PERM]}
    return net.eval(), _Reordered(net).eval(), {**pre, "label_space": "imagenet1k"}, own


def _values(model: nn.Module, suite: str, pre: dict, **kw) -> dict[tuple[str, str], float]:
    df = rbvit.evaluate(model, suite, preprocessing=pre, progress=False, batch_size=50, **kw)
    return {(c, m): v for c, m, v in zip(df.condition, df.metric, df.value)}


@needs_imagenet
@pytest.mark.parametrize("suite", ["imagenet_r", "imagenet_o"])
def test_a_model_in_its_own_class_order_scores_as_in_imagenets(tmp_path, suite):
    if suite == "imagenet_r":
        data, kw = _ar_fixture(tmp_path / "imagenet-r", "imagenet-r"), {}
    else:
        wnids = sorted(p.name for p in IMAGENET_SAMPLES.iterdir())[::50]
        data, kw = (
            _ood_fixture(tmp_path / "imagenet-o", wnids),
            {"suite_params": {"clean_data": str(IMAGENET_SAMPLES)}},
        )
    net, reordered, pre, own = _pair(32)
    theirs = _values(net, suite, pre, data=str(data), **kw)
    mine = _values(reordered, suite, own, data=str(data), **kw)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert mine[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_shape_bias_of_a_model_in_its_own_class_order(tmp_path):
    root = _cue_conflict(tmp_path / "cue-conflict")
    net, reordered, pre, own = _pair(16)
    pre, own = ({**p, "interpolation": "nearest", "mean": [0.0] * 3, "std": [1.0] * 3} for p in (pre, own))
    theirs = _values(net, "shape_bias", pre, data=str(root))
    mine = _values(reordered, "shape_bias", own, data=str(root))
    assert mine == pytest.approx(theirs, abs=1e-6)


def test_a_label_space_without_the_classes_is_refused(tmp_path):
    root = _cue_conflict(tmp_path / "cue-conflict")
    net, _, pre, _ = _pair(16)
    words = {**pre, "label_space": [f"class {i}" for i in range(1000)]}
    with pytest.raises(ConfigError, match="without WordNet ids"):
        _values(net, "shape_bias", words, data=str(root))
    partial = {**pre, "label_space": list(WNIDS[:999]) + ["n99999999"]}
    with pytest.raises(ConfigError, match="lacks 1 of the 1000"):
        _values(net, "shape_bias", partial, data=str(root))
