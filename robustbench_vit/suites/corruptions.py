"""``corruptions``: the 15 (+4) common corruptions x 5 severities applied on the fly to any dataset
(Hendrycks & Dietterich 2019), with our batched torch backend on the model's device or the
``imagecorruptions`` reference (CPU, per image).

Backend choice for the reference: ``imagecorruptions-imaug`` (the maintained fork, same import name
and API) is the declared dependency, because the original 1.1.2 breaks on glass_blur, gaussian_blur
and fog under numpy 2 / scikit-image 0.26 and needs pkg_resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from robustbench_vit.data.decode import apply_geometry
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.mce import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_HEADLINE,
    SEVERITIES,
)
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.perturbations.corruptions import (
    corrupt,
    jpeg_store,
    reference_corrupt,
)
from robustbench_vit.perturbations.corruptions.tables import (
    RELEASE_CROP,
    RELEASE_JPEG_QUALITY,
    RELEASE_RESIZE,
    CorruptionName,
    Severity,
    TableName,
)
from robustbench_vit.suites.base import Condition, EvalContext, Result, Suite, register_suite, seed_of
from robustbench_vit.suites.corruption_summary import corruption_summary

__all__ = ["Corruptions", "validation_of"]

#: how each torch implementation is validated against the reference (tests/test_corruptions*.py)
_GIVEN_DRAWS = ("glass_blur", "motion_blur", "snow", "spatter", "elastic_transform", "fog", "frost")
_DISTRIBUTION = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
#: where make_imagenet_c differs from imagecorruptions: checked against its restated formulas (snow's
#: layer blurred by ImageMagick itself, tests/test_imagemagick.py, as motion_blur is given its angles)
_RELEASE_FORMULA = ("elastic_transform", "frost", "pixelate", "zoom_blur", "snow")


def validation_of(corruption: str, backend: str, table: str) -> str:
    """The row label saying how far a (corruption, backend, table) cell is checked against the reference."""
    if backend == "imagecorruptions":
        return "reference"
    if table == "cifar10":  # make_cifar_c restated; its ImageMagick motion blur pixel for pixel
        return "pixel-given-draws" if corruption == "motion_blur" else "formula"
    if table == "imagenet_c_release" and corruption in _RELEASE_FORMULA:
        return "formula"
    if corruption in _GIVEN_DRAWS:
        return "pixel-given-draws"
    return "distribution" if corruption in _DISTRIBUTION else "pixel"


@register_suite("corruptions")
@dataclass(frozen=True)
class Corruptions(Suite):
    """Top-1 / error per (corruption, severity) under on-the-fly corruptions.

    Parameters:
        corruptions: names (default the 15 benchmark corruptions; the 4 extra may be added).
        severities: subset of 1..5.
        backend: ``torch`` (batched, on the model's device) or ``imagecorruptions`` (reference, CPU).
        table: ``imagenet_c_release`` (make_imagenet_c.py: images resized 256 / cropped 224, corrupted
            with its parameters and variants, stored as JPEG q85, then the model's own crop as for the
            files -- the only table whose mCE is comparable with the released ImageNet-C), ``imagenet``
            (imagecorruptions' tables at the model's input resolution), ``cifar10`` (CIFAR-10-C tables),
            or ``auto``: ``cifar10`` at <= 32 px, ``imagenet`` for the imagecorruptions backend, else
            ``imagenet_c_release``.

    ``mce``/``ce``/``relative_mce`` (AlexNet-normalised) are written only for ``imagenet_c_release``;
    every table gets ``mean_corruption_accuracy`` and ``ce_unnormalised`` (mean error over severities).
    """

    #: 3: table imagenet_c_release (default at ImageNet size); mCE only where comparable. 4: the release and
    #: CIFAR tables quantise motion_blur and snow's layer as ImageMagick writes 8 bits (16-bit rounding first)
    version: ClassVar[int] = 4
    paper: ClassVar[str] = (
        "Hendrycks & Dietterich 2019 (ImageNet-C / CIFAR-10-C parameter tables, applied on the fly)"
    )
    metrics: ClassVar[tuple[str, ...]] = ("top1", "error")
    headline: ClassVar[tuple[tuple[str, str], ...]] = CORRUPTION_HEADLINE

    corruptions: tuple[CorruptionName, ...] = BENCHMARK_CORRUPTIONS
    severities: tuple[Severity, ...] = SEVERITIES
    backend: Literal["torch", "imagecorruptions"] = "torch"
    table: Literal["auto", TableName] = "auto"

    def libraries(self) -> tuple[str, ...]:
        # OpenCV filters (defocus disk, frost resize), imagecorruptions' frost photographs; the reference
        # backend is that package itself, with SciPy and scikit-image under it
        return ("cv2", "imagecorruptions") + (
            ("scipy", "skimage") if self.backend == "imagecorruptions" else ()
        )

    def __post_init__(self) -> None:
        if self.backend == "imagecorruptions" and self.table in ("cifar10", "imagenet_c_release"):
            raise ConfigError(
                f"the imagecorruptions reference has only the imagecorruptions ImageNet tables; "
                f"use -p backend=torch for table={self.table}"
            )

    def resolved_table(self, image_size: tuple[int, int]) -> str:
        if self.table != "auto":
            return self.table
        if self.backend != "torch":
            return "imagenet"
        return "cifar10" if max(image_size) <= 32 else "imagenet_c_release"

    def data_config(self, model: LoadedModel) -> DataConfig:
        """``imagenet_c_release`` decodes images as make_imagenet_c did (resize 256, centre crop 224,
        bilinear); the model's own geometry is applied after corrupting, as for the released files, and the
        rows' ``preprocessing_source`` names both steps (the other columns describe the decoding)."""
        dc = model.data_config
        if self.resolved_table(dc.image_size) != "imagenet_c_release":
            return dc
        return dc.replace(
            input_size=(3, RELEASE_CROP, RELEASE_CROP),
            crop_pct=RELEASE_CROP / RELEASE_RESIZE,
            interpolation="bilinear",
            crop_mode="center",
            source=f"{dc.source}; make_imagenet_c resize {RELEASE_RESIZE} / crop {RELEASE_CROP}, corrupted, "
            f"JPEG q{RELEASE_JPEG_QUALITY}, then to the model: {_file_to_model(dc).describe()}",
        )

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        table = self.resolved_table(ctx.model.data_config.image_size)
        conds = []
        for c in self.corruptions:
            for s in self.severities:
                params: dict[str, Any] = {
                    "corruption": c,
                    "severity": s,
                    "backend": self.backend,
                    "param_table": table,
                    "validation": validation_of(c, self.backend, table),
                }
                if table == "imagenet_c_release":
                    params["storage"] = f"jpeg q{RELEASE_JPEG_QUALITY}"
                conds.append(Condition(f"{c}/{s}", float(s), params))
        return conds

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        p = cond.params
        if p["backend"] == "torch":
            out = corrupt(x, p["corruption"], p["severity"], generator=generator, table=p["param_table"])
        else:
            out = reference_corrupt(x, p["corruption"], p["severity"], seed=seed_of(generator))
        if p["param_table"] != "imagenet_c_release":
            return out
        return _as_released_file_to_model(out, ctx.model.data_config)

    def summarize(self, results: list[Result]) -> list[Result]:
        return corruption_summary(results)


def _file_to_model(model_dc: DataConfig) -> DataConfig:
    """How a 224 px released file reaches the model: the ``imagenet_c`` suite's ``preprocessing=crop``."""
    return model_dc.replace(crop_pct=1.0, crop_mode="center")


def _as_released_file_to_model(x: torch.Tensor, model_dc: DataConfig) -> torch.Tensor:
    """224 px corrupted images -> JPEG q85 as stored in the released files -> the model's input, with the
    same centre-crop geometry as the ``imagenet_c`` suite's default ``preprocessing=crop``."""
    stored = jpeg_store(x, RELEASE_JPEG_QUALITY)
    geo = _file_to_model(model_dc)
    if tuple(stored.shape[-2:]) == geo.image_size:
        return stored
    u8 = (stored * 255).round().to(torch.uint8).cpu()
    return apply_geometry(u8, geo).to(x.device).float() / 255
