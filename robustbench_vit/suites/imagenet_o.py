"""``imagenet_o``: out-of-distribution detection on ImageNet-O (Hendrycks et al. 2021, "Natural
Adversarial Examples").

ImageNet-O images (``<root>/<wnid>/*.jpg``; the wnid is the ImageNet-1k class the image was confused
with) are the anomalies; the in-distribution images are the ImageNet validation images of the same
classes (``clean_data``, an ImageNet val folder in wnid folders). As the paper's evaluation code, the
logits are restricted to the classes of the ImageNet-O folders (200 in the release), the anomaly score
is the negative maximum softmax probability over them, the anomalies are the positive class, and
AUPR (the paper's headline metric; average precision), AUROC and the FPR at 95% recall are reported.
Chance AUPR is the anomalies' share of the images (2000 / 12000 = 16.7% with the full sets).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset, concat_datasets, image_folder
from robustbench_vit.data.labels import wnid_positions
from robustbench_vit.data.registry import open_dataset
from robustbench_vit.data.subset import LIMIT_SEED, stratified_limit
from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.metrics.accumulators import ClassificationAccumulator, MetricValue, register_metric
from robustbench_vit.metrics.ood import aupr, auroc, fpr_at_recall
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.suites.base import NON_NEGATIVE, Condition, EvalContext, Result, Suite, register_suite
from robustbench_vit.suites.reference_preprocessing import WithReferencePreprocessing

__all__ = ["ImageNetO", "OOD_PART", "ID_PART"]

OOD_PART, ID_PART = "imagenet-o", "imagenet-val"

register_metric(
    "aupr", higher_is_better=True, proportion=False, description="OOD average precision, anomalies positive"
)
register_metric("auroc", higher_is_better=True, proportion=False, description="OOD area under the ROC curve")
register_metric(
    "fpr95",
    higher_is_better=False,
    proportion=True,
    description="OOD false-positive rate at 95% anomaly recall",
)
register_metric(
    "ood_share", higher_is_better=False, proportion=True, description="anomalies' share (chance AUPR)"
)


@register_suite("imagenet_o")
@dataclass(frozen=True)
class ImageNetO(WithReferencePreprocessing, Suite):
    """AUPR, AUROC and FPR95 of maximum-softmax-probability OOD detection, ImageNet-O vs ImageNet val.

    Parameters:
        clean_data: ImageNet val folder (``<wnid>/*``); its images of the ImageNet-O classes are the
            in-distribution side (required).
        clean_limit: at most this many in-distribution images, spread over classes (0: all).
    """

    paper: ClassVar[str] = "Hendrycks et al. 2021, Natural Adversarial Examples (ImageNet-O)"
    metrics: ClassVar[tuple[str, ...]] = ("aupr", "auroc", "fpr95")
    calibration: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[tuple[tuple[str, str], ...]] = (("*", "aupr"), ("*", "auroc"), ("*", "fpr95"))

    clean_data: str = ""
    clean_limit: Annotated[int, NON_NEGATIVE] = 0

    def libraries(self) -> tuple[str, ...]:
        return ("sklearn",)  # AUPR and AUROC are scikit-learn's

    def open_data(self, data, dataset, labels):  # type: ignore[no-untyped-def]
        self.refuse_labels_file(labels)
        if data is None:
            raise DataError("imagenet_o needs --data PATH to the ImageNet-O folder (<root>/<wnid>/*.jpg)")
        if not self.clean_data:
            raise ConfigError(
                "imagenet_o needs -p clean_data=PATH to an ImageNet val folder (<wnid>/*), the in-distribution side"
            )
        _, ood = open_dataset(data, dataset=dataset or "folder")
        try:
            val = image_folder(self.clean_data, classes=list(ood.classes))
        except DataError as e:
            raise DataError(f"clean_data for imagenet_o: {e}") from None
        if self.clean_limit:
            keep = stratified_limit(val.targets, self.clean_limit, LIMIT_SEED)
            val = _subset(val, keep)
        return OOD_PART, concat_datasets([(OOD_PART, ood), (ID_PART, val)], ood.classes)

    def _mask(self, ds: ImageDataset, model: LoadedModel) -> torch.Tensor:
        # the 200 classes' outputs, matched by wnid (ImageNet-1k's order, or a card's own list of wnids)
        return torch.tensor(wnid_positions(model.label_space, ds.classes, "imagenet_o"))

    def label_map(self, ds: ImageDataset, model: LoadedModel) -> np.ndarray:
        self._mask(ds, model)  # checks the label space and that every folder is an ImageNet-1k wnid
        return np.arange(len(ds.classes), dtype=np.int64)

    def logits(self, ctx: EvalContext, x: torch.Tensor) -> torch.Tensor:
        mask = ctx.state.get("mask")
        if mask is None:
            mask = ctx.state["mask"] = self._mask(ctx.dataset, ctx.model).to(x.device)
        x = self.model_input(ctx.model, x)
        return ctx.model(x)[:, mask]

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        flags = np.asarray([it.startswith(OOD_PART + "/") for it in ctx.dataset.items])
        is_ood = flags[ctx.indices]
        params = {
            "classes": len(ctx.dataset.classes),
            "masked": True,
            "score": "negative max softmax probability",
            "preprocessing": self.preprocessing,
            "clean_data": self.clean_data,
            "n_ood": int(is_ood.sum()),
            "n_in_distribution": int((~is_ood).sum()),
            # dataset indices below this are anomalies (the ImageNet-O part comes first)
            "ood_items": int(flags.sum()),
        }
        return [Condition("ood/msp", None, params)]

    def condition_metrics(self, results: list[tuple[Condition, ClassificationAccumulator]]) -> list[Result]:
        ((cond, acc),) = results
        is_ood = acc.samples()["index"] < int(cond.params["ood_items"])
        score = -acc._cat("conf").astype(np.float64)
        n = acc.n
        return [
            (cond, MetricValue("aupr", aupr(is_ood, score), n)),
            (cond, MetricValue("auroc", auroc(is_ood, score), n)),
            (cond, MetricValue("fpr95", fpr_at_recall(is_ood, score, 0.95), n)),
            (cond, MetricValue("ood_share", float(is_ood.mean()) if n else float("nan"), n)),
        ]


def _subset(ds: ImageDataset, keep: np.ndarray) -> ImageDataset:
    """The images ``keep`` of a dataset (same classes), with its own fingerprint."""
    items = [ds.items[i] for i in keep]
    read, encoded, file = ds.read, ds.encoded, ds.file
    return ImageDataset(
        ds.kind,
        ds.root,
        ds.classes,
        items,
        ds.targets[keep],
        lambda i: read(int(keep[i])),
        hashlib.sha256(f"{ds.fingerprint}:{keep.tolist()}".encode()).hexdigest()[:16],
        None if encoded is None else lambda i: encoded(int(keep[i])),
        None if file is None else lambda i: file(int(keep[i])),
        None if ds.stats is None else ds.stats[keep],
    )
