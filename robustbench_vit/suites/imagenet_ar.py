"""``imagenet_a`` / ``imagenet_r``: 200-class natural adversarial examples (Hendrycks et al. 2021,
"Natural Adversarial Examples") and renditions (Hendrycks et al. 2021, "The Many Faces of
Robustness"). Logits are always restricted to the 200 ImageNet-1k classes of the dataset (timm's
shipped index lists); top-1 is on the 200-way problem, and so are the calibration metrics (softmax over
the 200 logits, as the papers' evaluation code): NLL, ECE, Brier, RMS calibration error and AURRA. With ``clean_data`` (an ImageNet val
folder) the clean accuracy on the same 200 classes and the difference are reported too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset, image_folder
from robustbench_vit.data.labels import wnid_positions
from robustbench_vit.data.registry import open_dataset, subset_synsets
from robustbench_vit.data.subset import LIMIT_SEED, stratified_limit
from robustbench_vit.device import to_device
from robustbench_vit.errors import DataError
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.suites.base import (
    NON_NEGATIVE,
    Condition,
    ConditionData,
    EvalContext,
    Result,
    Suite,
    register_suite,
)
from robustbench_vit.suites.reference_preprocessing import WithReferencePreprocessing

__all__ = ["ImageNetA", "ImageNetR"]


@dataclass(frozen=True)
class _Subset200(WithReferencePreprocessing, Suite):
    dataset_name: ClassVar[str] = ""
    handles_class_subset: ClassVar[bool] = True
    #: RMS calibration error and AURRA as the natural-adversarial-examples paper reports them
    metrics: ClassVar[tuple[str, ...]] = ("top1", "top5", "rms_calibration_error", "aurra")
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("imagenet-*", "top1"),
        ("imagenet-*", "rms_calibration_error"),
        ("imagenet-*", "aurra"),
        ("clean-200", "top1"),
        ("summary/diff", "top1_diff"),
    )

    clean_data: str = ""
    clean_limit: Annotated[int, NON_NEGATIVE] = 0

    def open_data(self, data, dataset, labels):  # type: ignore[no-untyped-def]
        """The benchmark's folder: wnid class folders as released, or one flat folder with ``--labels``."""
        if data is None:
            raise DataError(
                f"{self.name} needs --data PATH to the {self.dataset_name} folder (<root>/<wnid>/*.jpg)"
            )
        _, ds = open_dataset(data, dataset=dataset or self.dataset_name, labels=labels)
        wnids, _ = subset_synsets(self.dataset_name)
        extra = sorted(set(ds.classes) - set(wnids))
        if extra:
            raise DataError(
                f"{data}: classes {', '.join(extra[:5])} are not among the 200 {self.dataset_name} classes"
            )
        return self.dataset_name, ds

    def _mask(self, model: LoadedModel) -> tuple[list[str], torch.Tensor]:
        # the 200 classes' outputs, matched by wnid: timm's indices for ImageNet-1k's order, and the right
        # outputs of a card that lists the ImageNet classes in its own order
        wnids, _ = subset_synsets(self.dataset_name)
        return wnids, torch.tensor(wnid_positions(model.label_space, wnids, self.name))

    def label_map(self, ds: ImageDataset, model: LoadedModel) -> np.ndarray:
        wnids, _ = self._mask(model)
        pos = {w: i for i, w in enumerate(wnids)}
        return np.asarray([pos[c] for c in ds.classes], dtype=np.int64)

    def logits(self, ctx: EvalContext, x: torch.Tensor) -> torch.Tensor:
        idx = ctx.state.get("mask")
        if idx is None:  # once per run, on the model's device (not two file reads and a copy per batch)
            idx = ctx.state["mask"] = to_device(self._mask(ctx.model)[1], x.device)
        x = self.model_input(ctx.model, x)
        return ctx.model(x)[:, idx]

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        pre = {"classes": 200, "masked": True, "preprocessing": self.preprocessing}
        conds = [Condition(self.dataset_name, None, pre)]
        if self.clean_data:
            conds.append(Condition("clean-200", None, {**pre, "clean_data": self.clean_data}))
        return conds

    def condition_data(self, ctx: EvalContext, cond: Condition) -> ConditionData | None:
        if cond.name != "clean-200":
            return None
        wnids, _ = self._mask(ctx.model)
        try:
            ds = image_folder(self.clean_data, classes=wnids)
        except DataError as e:
            raise DataError(f"clean_data for {self.name}: {e}") from None
        idx = np.arange(len(ds))
        if self.clean_limit:
            idx = stratified_limit(ds.targets, self.clean_limit, LIMIT_SEED)
        return ds, ctx.cache.data_config, idx, self.label_map(ds, ctx.model)

    def summarize(self, results: list[Result]) -> list[Result]:
        top1 = {c.name: mv for c, mv in results if mv.metric == "top1"}
        if self.dataset_name in top1 and "clean-200" in top1:
            a, c = top1[self.dataset_name], top1["clean-200"]
            diff = MetricValue("top1_diff", a.value - c.value, a.n)
            return [(Condition("summary/diff", None, {"of": "shifted - clean-200"}), diff)]
        return []


@register_suite("imagenet_a")
@dataclass(frozen=True)
class ImageNetA(_Subset200):
    """ImageNet-A top-1/top-5 on the 200-way problem (``preprocessing=reference``: the paper's tables' transform).

    ``clean_data`` adds clean-200 accuracy and the diff. ``preprocessing=reference`` evaluates every model
    with Resize 256 / CenterCrop 224 / ImageNet mean-std, as the paper's ``eval.py`` does (its tables);
    ``model`` (default) uses the model's own preprocessing."""

    paper: ClassVar[str] = "Hendrycks et al. 2021, Natural Adversarial Examples"
    dataset_name: ClassVar[str] = "imagenet-a"


@register_suite("imagenet_r")
@dataclass(frozen=True)
class ImageNetR(_Subset200):
    """ImageNet-R top-1/top-5 on the 200-way problem (``preprocessing=reference``: the paper's tables' transform).

    ``clean_data`` adds clean-200 accuracy and the diff. ``preprocessing=reference`` evaluates every model
    with Resize 256 / CenterCrop 224 / ImageNet mean-std, as the paper's ``eval.py`` does (its tables);
    ``model`` (default) uses the model's own preprocessing."""

    paper: ClassVar[str] = "Hendrycks et al. 2021, The Many Faces of Robustness"
    dataset_name: ClassVar[str] = "imagenet-r"
