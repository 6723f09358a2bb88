"""The shape_bias suite on generated fixtures in model-vs-human's folder and file-name layout, with oracle
models whose answer is known (always the shape, always the texture), and the 16-class mapping against a
restatement of the reference's aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import robustbench_vit as rbvit
from robustbench_vit.data.labels import get_label_space
from robustbench_vit.errors import DataError
from robustbench_vit.suites.shape_bias import aggregate_16, shape16_indices, texture_category

CATS = sorted(shape16_indices())
PRE = {
    "input_size": (3, 16, 16),
    "crop_pct": 1.0,
    "interpolation": "nearest",
    "mean": (0, 0, 0),
    "std": (1, 1, 1),
}


def test_sixteen_categories_and_their_imagenet_classes():
    assert CATS == sorted(
        "airplane bear bicycle bird boat bottle car cat chair clock dog elephant keyboard knife oven truck".split()
    )
    idx = [i for c in CATS for i in shape16_indices()[c]]
    assert len(idx) == len(set(idx)) == 207 and all(0 <= i < 1000 for i in idx)
    wnids = get_label_space("imagenet1k").wnids
    assert wnids[404] == "n02690373"  # airliner -> airplane
    assert {wnids[i] for i in shape16_indices()["elephant"]} == {"n02504013", "n02504458"}


@pytest.mark.parametrize(
    "name, texture",
    [
        ("airplane1-bicycle2.png", "bicycle"),
        ("knife10-elephant3.png", "elephant"),
        ("0001_cl_dnn_cue-conflict_0_cat4-clock1.png", "clock"),
    ],
)
def test_texture_category_from_file_names(name, texture):
    assert texture_category(name) == texture


def test_aggregation_matches_the_reference_mapping():
    """model-vs-human: softmax over 1000, mean probability per category, the largest mean decides."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 1000, generator=g) * 4
    probs = logits.softmax(1).numpy()
    ref = np.stack([[np.mean(np.take(p, shape16_indices()[c])) for c in CATS] for p in probs])
    assert np.allclose(aggregate_16(logits).numpy(), ref, rtol=1e-5, atol=1e-9)
    assert (aggregate_16(logits).argmax(1).numpy() == ref.argmax(1)).all()


def test_suite_scores_decide_as_the_reference_even_for_vanishing_probabilities():
    """Very confident logits leave most category means far below 1e-30; the suite's scores must still rank
    them as the reference's means do (no clamp or log that ties them)."""
    from types import SimpleNamespace

    from robustbench_vit.suites.shape_bias import ShapeBias

    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(1)) * 60
    probs = logits.softmax(1).numpy()
    ref = np.stack([[np.mean(np.take(p, shape16_indices()[c])) for c in CATS] for p in probs]).argmax(1)

    class _Logits:  # a loaded model whose outputs are the logits above, in ImageNet-1k's order
        label_space = get_label_space("imagenet1k")

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x

    scores = ShapeBias().logits(SimpleNamespace(model=_Logits(), state={}), logits)
    assert (scores.argmax(1).numpy() == ref).all()


class _Oracle(nn.Module):
    """Reads the shape category from the red channel and the texture category from the green channel of a
    fixture image and answers one of them with an ImageNet class of that category."""

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer
        self.first = torch.tensor([shape16_indices()[c][0] for c in CATS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x[:, 0].mean((1, 2)) * 255 / 10).round().long()
        texture = (x[:, 1].mean((1, 2)) * 255 / 10).round().long()
        pick = {"shape": shape, "texture": texture}[self.answer]
        out = torch.zeros(len(x), 1000)
        out[torch.arange(len(x)), self.first[pick]] = 12.0
        return out


def _image(path: Path, shape: int, texture: int) -> None:
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[..., 0], arr[..., 1] = shape * 10, texture * 10
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _cue_conflict(root: Path) -> Path:
    """Three images per shape category with other textures, plus one with shape == texture (excluded)."""
    for s, sc in enumerate(CATS):
        for j in (1, 2, 3):
            t = (s + j) % 16
            _image(root / sc / f"{sc}{j}-{CATS[t]}{j}.png", s, t)
    _image(root / "cat" / "cat9-cat9.png", CATS.index("cat"), CATS.index("cat"))
    return root


@pytest.mark.parametrize("answer, bias", [("shape", 1.0), ("texture", 0.0)])
def test_oracles_give_shape_bias_one_and_zero(tmp_path, answer, bias):
    root = _cue_conflict(tmp_path / "cue-conflict")
    df = rbvit.evaluate(_Oracle(answer), "shape_bias", data=str(root), preprocessing=PRE, progress=False)
    v = df.set_index("metric").value
    assert set(df.dataset) == {"cue-conflict"} and set(df.n) == {49}
    assert v["shape_bias"] == bias
    # fractions are over every image (model-vs-human), the shape == texture image counts for neither
    assert v["shape_fraction"] == pytest.approx(48 / 49 if answer == "shape" else 0.0)
    assert v["texture_fraction"] == pytest.approx(48 / 49 if answer == "texture" else 0.0)


def test_sixteen_class_accuracy_on_a_stylized_folder(tmp_path):
    for s, c in enumerate(CATS):
        _image(tmp_path / "stylized" / c / f"n0000_{s}.png", s, (s + 1) % 16)
    df = rbvit.evaluate(
        _Oracle("shape"), "shape_bias", data=str(tmp_path / "stylized"), preprocessing=PRE, progress=False
    )
    assert set(df.condition) == {"16-class"} and set(df.dataset) == {"shape16"}
    assert df.set_index("metric").value["top1"] == 1.0
    df = rbvit.evaluate(
        _Oracle("texture"), "shape_bias", data=str(tmp_path / "stylized"), preprocessing=PRE, progress=False
    )
    assert df.set_index("metric").value["top1"] == 0.0


def test_folders_outside_the_sixteen_categories_are_refused(tmp_path):
    _image(tmp_path / "d" / "zebra" / "zebra1-cat1.png", 0, 1)
    with pytest.raises(DataError, match="zebra"):
        rbvit.evaluate(
            _Oracle("shape"), "shape_bias", data=str(tmp_path / "d"), preprocessing=PRE, progress=False
        )


class _Random(nn.Module):
    """A fixed random linear 1000-way classifier over pooled pixels: arbitrary, mixed decisions."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(1000, 3 * 16, generator=torch.Generator().manual_seed(3)) * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.w.T


def test_shape_bias_equals_the_model_vs_human_analysis_restated(tmp_path):
    """Decisions of an arbitrary model, then model-vs-human's ShapeBias.analysis restated on a DataFrame:
    drop shape == texture rows, fractions over every row, bias = shape / (shape + texture)."""
    import pandas as pd

    root = _cue_conflict(tmp_path / "cc")
    net = _Random()
    df = rbvit.evaluate(net, "shape_bias", data=str(root), preprocessing=PRE, progress=False)
    got = df.set_index("metric").value
    files = sorted(root.glob("*/*.png"))
    x = (
        torch.stack([torch.from_numpy(np.asarray(Image.open(f))).permute(2, 0, 1) for f in files]).float()
        / 255
    )
    with torch.no_grad():
        probs = net(x).softmax(1).numpy()
    rows = []
    for f, p in zip(files, probs):
        agg = [np.mean(np.take(p, shape16_indices()[c])) for c in CATS]
        rows.append(
            {"object_response": CATS[int(np.argmax(agg))], "category": f.parent.name, "imagename": f.name}
        )
    ref = pd.DataFrame(rows)
    ref["correct_texture"] = ref["imagename"].apply(texture_category)
    ref["correct_shape"] = ref["category"]
    df2 = ref.loc[ref.correct_shape != ref.correct_texture]
    shape = len(df2.loc[df2.object_response == df2.correct_shape]) / len(ref)
    texture = len(df2.loc[df2.object_response == df2.correct_texture]) / len(ref)
    assert 0 < shape + texture  # the arbitrary model does take some cue decisions
    assert got["shape_fraction"] == pytest.approx(shape)
    assert got["texture_fraction"] == pytest.approx(texture)
    assert got["shape_bias"] == pytest.approx(shape / (shape + texture))


def test_reference_geometry_sees_the_whole_image_even_for_a_cropping_model(tmp_path):
    """model-vs-human feeds the cue-conflict images whole; a crop-0.875 model's own preprocessing would cut
    12.5% of each side. The default (reference) caches the whole image; geometry=model the cropped one."""
    from robustbench_vit.data.cache import ImageCache
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.suites import make_suite

    root = tmp_path / "cc"
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[0, :, 0] = 255  # a red top row: inside the image, outside a 0.875 centre crop
    (root / "cat").mkdir(parents=True)
    Image.fromarray(arr).save(root / "cat" / "cat1-dog1.png")
    pre = {**PRE, "input_size": [3, 16, 16], "crop_pct": 0.875, "interpolation": "bilinear"}
    model = wrap_module(_Oracle("shape"), preprocessing=pre, name="oracle")
    _, ds = open_dataset(root)
    seen = {}
    for geometry in ("reference", "model"):
        dc = make_suite("shape_bias", {"geometry": geometry}).data_config(model)
        cache = ImageCache(ds, dc, tmp_path / "cache")
        cache.ensure([0])
        seen[geometry] = cache.batch([0])[0].numpy().transpose(1, 2, 0)
    assert np.array_equal(seen["reference"], arr)  # the image as it is
    assert seen["model"][0, :, 0].max() < 255  # the crop lost the top row
    df = rbvit.evaluate(model, "shape_bias", data=str(root), progress=False)
    assert set(df.params.map(lambda p: json.loads(p)["geometry"])) == {"reference"}
    assert "no crop" in df.preprocessing_source.iloc[0] or "whole image" in df.preprocessing_source.iloc[0]
