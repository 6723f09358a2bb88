"""``shape_bias``: texture-vs-shape cue conflict (Geirhos et al. 2019, ICLR; the model-vs-human protocol)
and 16-class accuracy on Stylized-ImageNet / ImageNet-Sketch style folders.

Data: ``<root>/<category>/<image>`` with the 16 entry-level categories (airplane, bear, ... truck) as
folders. A cue-conflict image is named ``...<shape><i>-<texture><j>.png`` (e.g. ``airplane1-bicycle2.png``);
its folder is the shape category and the last ``-`` part of the name, digits removed, the texture
category. ImageNet-1k softmax probabilities are averaged over each category's ImageNet classes (the
WordNet sets shipped in ``data/_info/shape16.json``) and the decision is the category with the largest
mean. On cue-conflict images whose shape and texture categories differ: ``shape_fraction`` and
``texture_fraction`` (decisions equal to the shape / texture category, over all images, as model-vs-human
divides) and ``shape_bias = shape / (shape + texture)``. On other folders: the 16-class ``top1``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import ClassVar, Literal

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.labels import get_label_space, wnid_positions
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import DataError
from robustbench_vit.metrics.accumulators import ClassificationAccumulator, MetricValue, register_metric
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.suites.base import Condition, EvalContext, Result, Suite, register_suite

__all__ = ["ShapeBias", "shape16_indices", "texture_category", "aggregate_16"]

register_metric(
    "shape_bias", higher_is_better=True, proportion=False, description="shape / (shape + texture) decisions"
)
register_metric(
    "shape_fraction",
    higher_is_better=True,
    proportion=True,
    description="cue-conflict decisions for the shape",
)
register_metric(
    "texture_fraction",
    higher_is_better=False,
    proportion=True,
    description="cue-conflict decisions for the texture",
)

_CUE_CONFLICT = re.compile(r"[a-z]+\d*-[a-z]+\d*\.[A-Za-z]+$")


@cache
def shape16_indices() -> dict[str, tuple[int, ...]]:
    """The 16 categories (sorted, as model-vs-human) and their ImageNet-1k class indices."""
    text = (resources.files("robustbench_vit.data") / "_info" / "shape16.json").read_text()
    cats = json.loads(text)["categories"]
    return {c: tuple(cats[c]) for c in sorted(cats)}


def texture_category(file_name: str) -> str:
    """The texture category of a cue-conflict file name (model-vs-human's rule): the last ``_`` part,
    without extension, its last ``-`` part, without digits."""
    stem = file_name.split("_")[-1].split(".")[0]
    return "".join(ch for ch in stem.split("-")[-1] if not ch.isdigit())


def aggregate_16(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1000) ImageNet logits -> (N, 16) mean softmax probability per category (sorted category order)."""
    probs = logits.float().softmax(1)
    cols = [probs[:, list(idx)].mean(1) for idx in shape16_indices().values()]
    return torch.stack(cols, 1)


def _imagenet_outputs(model: LoadedModel) -> torch.Tensor | None:
    """The model's outputs of the 1000 ImageNet classes in ImageNet-1k's order, matched by wnid (``None``:
    they are its outputs as they are), so a card listing the classes in its own order is scored right."""
    space = model.label_space
    if space.name == "imagenet1k":
        return None
    return torch.tensor(wnid_positions(space, get_label_space("imagenet1k").wnids, "shape_bias"))


@register_suite("shape_bias")
@dataclass(frozen=True)
class ShapeBias(Suite):
    """Shape bias on cue-conflict images, or 16-class accuracy on stylized / sketch folders.

    Parameters:
        mode: ``auto`` (cue conflict when every file name has the ``<shape>-<texture>`` form),
            ``cue_conflict`` or ``accuracy``.
        geometry: ``reference`` (default; model-vs-human feeds the 224 px images as they are: no crop,
            the whole image resized to the model's input size, a no-op at 224) or ``model`` (the model's
            own resize + centre crop, which drops 12.5% of each side at crop_pct 0.875). Rows record it
            (``preprocessing`` and the condition's ``geometry``).
    """

    paper: ClassVar[str] = (
        "Geirhos et al. 2019, ImageNet-trained CNNs are biased towards texture (model-vs-human)"
    )
    metrics: ClassVar[tuple[str, ...]] = ("top1",)
    #: decisions over 16 averaged probabilities are not a calibrated distribution
    calibration: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[tuple[tuple[str, str], ...]] = (("cue-conflict", "shape_bias"), ("16-class", "top1"))

    mode: Literal["auto", "cue_conflict", "accuracy"] = "auto"
    geometry: Literal["reference", "model"] = "reference"

    def data_config(self, model: LoadedModel) -> DataConfig:
        dc = model.data_config
        if self.geometry == "model":
            return dc
        return dc.replace(
            crop_pct=1.0,
            crop_mode="squash",
            source=f"{dc.source}; shape_bias reference: whole image, no crop",
        )

    def open_data(self, data, dataset, labels):  # type: ignore[no-untyped-def]
        if data is None:
            raise DataError(
                "shape_bias needs --data PATH to a folder of the 16 categories (<root>/<category>/*)"
            )
        name, ds = super().open_data(data, dataset, labels)
        unknown = sorted(set(ds.classes) - set(shape16_indices()))
        if unknown:
            raise DataError(
                f"{data}: class folders {', '.join(unknown[:5])} are not among the 16 categories "
                f"({', '.join(shape16_indices())})"
            )
        if self._is_cue_conflict(ds):
            return "cue-conflict", ds
        return (name if dataset else "shape16"), ds

    def _is_cue_conflict(self, ds: ImageDataset) -> bool:
        if self.mode != "auto":
            return self.mode == "cue_conflict"
        return all(_CUE_CONFLICT.search(it.rsplit("/", 1)[-1]) for it in ds.items)

    def label_map(self, ds: ImageDataset, model: LoadedModel) -> np.ndarray:
        _imagenet_outputs(model)  # refuses a model without the 1000 ImageNet classes
        pos = {c: i for i, c in enumerate(shape16_indices())}
        return np.asarray([pos[c] for c in ds.classes], dtype=np.int64)

    def logits(self, ctx: EvalContext, x: torch.Tensor) -> torch.Tensor:
        # the 16 averaged probabilities themselves as scores: their argmax is model-vs-human's decision. A log
        # (or a clamp before it) would tie categories whose means differ below float32 resolution there, and
        # only top-1/top-5 are read from these scores (``calibration = ()``).
        out = ctx.model(x)
        if "imagenet_order" not in ctx.state:  # once per run, on the model's device
            order = _imagenet_outputs(ctx.model)
            ctx.state["imagenet_order"] = None if order is None else order.to(out.device)
        order = ctx.state["imagenet_order"]
        return aggregate_16(out if order is None else out[:, order])

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        if not self._is_cue_conflict(ctx.dataset):
            return [
                Condition(
                    "16-class",
                    None,
                    {"classes": 16, "aggregation": "mean probability", "geometry": self.geometry},
                )
            ]
        cats = list(shape16_indices())
        names = [it.rsplit("/", 1)[-1] for it in ctx.dataset.items]
        textures = [texture_category(n) for n in names]
        bad = sorted({t for t in textures if t not in cats})
        if bad:
            raise DataError(f"cue-conflict file names name unknown texture categories: {', '.join(bad[:5])}")
        params = {
            "classes": 16,
            "aggregation": "mean probability",
            "geometry": self.geometry,
            # texture category of every dataset image, one hex digit each (sorted category order)
            "texture_codes": "".join(f"{cats.index(t):x}" for t in textures),
        }
        return [Condition("cue-conflict", None, params)]

    def condition_metrics(self, results: list[tuple[Condition, ClassificationAccumulator]]) -> list[Result]:
        ((cond, acc),) = results
        if cond.name != "cue-conflict":
            return super().condition_metrics(results)
        s = acc.samples()
        codes = cond.params["texture_codes"]
        texture = np.asarray([int(codes[i], 16) for i in s["index"]], dtype=np.int64)
        shape, pred = s["label"], s["pred"]
        conflict = shape != texture
        n = len(pred)
        shape_hits = int(np.sum(conflict & (pred == shape)))
        texture_hits = int(np.sum(conflict & (pred == texture)))
        decided = shape_hits + texture_hits
        return [
            (cond, MetricValue("shape_bias", shape_hits / decided if decided else float("nan"), n)),
            (cond, MetricValue("shape_fraction", shape_hits / n if n else float("nan"), n)),
            (cond, MetricValue("texture_fraction", texture_hits / n if n else float("nan"), n)),
        ]
