"""The preprocessing of the ImageNet-A/R/O papers' evaluation code, offered beside the model's own.

hendrycks/natural-adv-examples (``eval.py``, ``calibration_tools``) and hendrycks/imagenet-r evaluate
every model with ``Resize(256)``, ``CenterCrop(224)`` (bilinear) and ImageNet mean/std, whatever the model
was trained with. ``preprocessing=reference`` reproduces that: the geometry through the image cache, the
normalisation by re-expressing the [0, 1] input so the model's own normalisation yields ImageNet's
(``x' = (x - m_ref) / s_ref * s + m`` feeds ``net((x - m_ref) / s_ref)``, exactly up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.device import to_device
from robustbench_vit.models.loading import LoadedModel

__all__ = [
    "REFERENCE_MEAN",
    "REFERENCE_STD",
    "reference_data_config",
    "reference_input",
    "WithReferencePreprocessing",
]

#: torchvision's / the papers' ImageNet statistics
REFERENCE_MEAN = (0.485, 0.456, 0.406)
REFERENCE_STD = (0.229, 0.224, 0.225)


def reference_data_config(dc: DataConfig) -> DataConfig:
    """Resize 256 / centre crop 224, bilinear, ImageNet mean/std (the papers' transform)."""
    return DataConfig(
        input_size=(3, 224, 224),
        crop_pct=224 / 256,
        interpolation="bilinear",
        mean=REFERENCE_MEAN,
        std=REFERENCE_STD,
        crop_mode="center",
        source=f"reference: Resize(256), CenterCrop(224), ImageNet mean/std (model's own: {dc.describe()})",
    )


def reference_input(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """``x`` in [0, 1] re-expressed so that ``model`` (which normalises with its own mean/std) sees it
    normalised with ImageNet's."""
    mean = to_device(torch.tensor(REFERENCE_MEAN).view(1, 3, 1, 1), x.device)
    std = to_device(torch.tensor(REFERENCE_STD).view(1, 3, 1, 1), x.device)
    return (x - mean) / std * model.module.std + model.module.mean


@dataclass(frozen=True)
class WithReferencePreprocessing:
    """The ``preprocessing`` parameter of a suite (mixed in before :class:`Suite`): ``model`` (default) uses
    the model's own preprocessing; ``reference`` the papers' Resize 256 / CenterCrop 224 / ImageNet
    mean-std for every model, which is what their published tables used."""

    preprocessing: Literal["model", "reference"] = "model"

    def data_config(self, model: LoadedModel) -> DataConfig:
        if self.preprocessing == "reference":
            return reference_data_config(model.data_config)
        return model.data_config

    def model_input(self, model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the model must receive it under this preprocessing."""
        return reference_input(model, x) if self.preprocessing == "reference" else x
