"""Evaluation preprocessing, derived from the model's metadata and recorded in every row.

A :class:`DataConfig` mirrors the fields of timm's resolved data config (``input_size``,
``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``, ``std``) and is always *derived*:
from timm's ``PretrainedCfg`` (:func:`from_timm`), from a torchvision weights enum's own
``transforms()`` (:func:`from_torchvision`), or from a model card. It is never retyped by hand.

The geometric part (resize + crop) runs once, when images are decoded into the uint8 cache;
the photometric part (mean/std) runs inside the model wrapper, so every perturbation and attack
works on RGB in [0, 1].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from robustbench_vit.errors import ConfigError
from robustbench_vit.registry import first_unknown

__all__ = ["DataConfig", "from_timm", "from_torchvision", "check_user_config", "INTERPOLATIONS", "CROP_MODES"]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos")
CROP_MODES = ("center", "squash")
#: the keys a preprocessing dict written by a user may hold (``label_space`` is read by the caller; ``source``
#: lets a ``DataConfig.to_dict()`` be handed back)
USER_KEYS = (
    "input_size",
    "img_size",
    "crop_pct",
    "crop_mode",
    "interpolation",
    "mean",
    "std",
    "label_space",
    "source",
)


def _timm_cfg_fields() -> tuple[str, ...]:
    """The fields of timm's ``PretrainedCfg``: a model's own ``pretrained_cfg`` handed over as its config is
    accepted whole (only the keys :meth:`DataConfig.from_dict` reads take effect)."""
    try:
        from timm.models import PretrainedCfg
    except ImportError:
        return ()
    return tuple(f.name for f in dataclasses.fields(PretrainedCfg))


def check_user_config(d: dict[str, Any], where: str) -> None:
    """Refuse a key of a user's preprocessing dict that neither :meth:`DataConfig.from_dict` reads nor timm's
    ``PretrainedCfg`` has: a misspelt ``crop_ptc`` would leave timm's default crop in place without a word."""
    unknown = first_unknown(d, (*USER_KEYS, *_timm_cfg_fields()))
    if unknown:
        key, close = unknown
        hint = f"did you mean {close!r}? " if close else ""
        raise ConfigError(f"{where}: unknown preprocessing key {key!r}; {hint}(read: {', '.join(USER_KEYS)})")


@dataclass(frozen=True)
class DataConfig:
    """Eval-time preprocessing of one model.

    Attributes:
        input_size: (channels, height, width) the model takes.
        crop_pct: fraction of the resized image kept by the center crop (timm semantics:
            the short side is resized to ``floor(size / crop_pct)``, then ``size`` is cropped; above 1 the
            crop is larger than the resized image, which is centred on black padding, as ImageNet-P's canvas).
        interpolation: resize filter.
        mean / std: normalisation applied inside the model wrapper.
        crop_mode: ``center`` (keep aspect, resize short side) or ``squash`` (resize both sides).
        source: where the numbers came from (``timm:<tag>``, ``torchvision:<weights>``, ``card:<path>``).
    """

    input_size: tuple[int, int, int]
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_mode: str = "center"
    source: str = ""

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation {self.interpolation!r} not in {INTERPOLATIONS}")
        if self.crop_mode not in CROP_MODES:
            raise ConfigError(f"crop_mode {self.crop_mode!r} not in {CROP_MODES}")
        numbers = (self.crop_pct, *self.mean, *self.std)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ConfigError(
                f"crop_pct, mean and std must be finite numbers, got crop_pct={self.crop_pct}, "
                f"mean={list(self.mean)}, std={list(self.std)}"
            )
        if not 0 < self.crop_pct <= 3:  # above 1: a canvas around the image (ImageNet-P's is 576/256)
            raise ConfigError(f"crop_pct must be in (0, 3], got {self.crop_pct}")
        if len(self.input_size) != 3 or len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("input_size, mean and std need 3 entries each (RGB)")
        if self.input_size[0] != 3 or min(self.input_size[1:]) < 1:
            raise ConfigError(f"input_size must be [3, H, W] with H, W >= 1, got {list(self.input_size)}")
        if any(not (s > 0) for s in self.std):  # also catches NaN
            raise ConfigError(f"std must be > 0 for every channel, got {list(self.std)}")
        if any(m != m for m in self.mean):
            raise ConfigError(f"mean must be numbers, got {list(self.mean)}")
        if not all(0 <= m <= 1 for m in self.mean) or not all(s <= 1 for s in self.std):
            # rbvit's pixels are RGB in [0, 1]: ImageNet's 123.675 / 58.395 are the 0-255 scale, and would
            # normalise every image to nearly one value without an error
            raise ConfigError(
                f"mean {list(self.mean)} / std {list(self.std)} are not on the [0, 1] pixel scale rbvit feeds "
                "models (mean in [0, 1], std <= 1); divide values given for 0-255 pixels by 255"
            )

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return (int(self.input_size[1]), int(self.input_size[2]))

    @property
    def resize_size(self) -> tuple[int, int]:
        """(height, width) the short side / both sides are resized to before cropping (timm rule)."""
        h, w = self.image_size
        # the tiny epsilon keeps e.g. 224 / (224 / 232) from flooring to 231
        return (math.floor(h / self.crop_pct + 1e-6), math.floor(w / self.crop_pct + 1e-6))

    def geometry(self) -> dict[str, Any]:
        """The part that shapes the cached uint8 images (cache key)."""
        return {
            "resize": list(self.resize_size),
            "crop": list(self.image_size),
            "interpolation": self.interpolation,
            "crop_mode": self.crop_mode,
        }

    def geometry_key(self) -> str:
        blob = json.dumps(self.geometry(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def describe(self) -> str:
        """Short human form, e.g. ``resize 256 / crop 224 bilinear``."""
        r, c = self.resize_size, self.image_size
        rs = str(r[0]) if r[0] == r[1] else f"{r[0]}x{r[1]}"
        cs = str(c[0]) if c[0] == c[1] else f"{c[0]}x{c[1]}"
        cut = "crop" if self.crop_pct <= 1 else "centre on black"  # crop_pct > 1: a canvas around the image
        return f"resize {rs} / {cut} {cs} {self.interpolation} ({self.crop_mode})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> DataConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> DataConfig:
        """Build from a timm-style dict (``input_size``/``img_size``, ``crop_pct``, ...)."""
        if "input_size" in d:
            size = tuple(int(v) for v in d["input_size"])
            if len(size) == 2:
                size = (3, *size)
        elif "img_size" in d:
            s = d["img_size"]
            size = (3, s, s) if isinstance(s, int) else (3, int(s[0]), int(s[1]))
        else:
            raise ConfigError("data config needs 'input_size' [3, H, W] (or 'img_size')")
        try:
            return cls(
                input_size=size,  # type: ignore[arg-type]
                # only an absent (None) crop_pct takes timm's default: 0 is refused, never replaced
                crop_pct=float(0.875 if d.get("crop_pct") is None else d["crop_pct"]),
                interpolation=str("bilinear" if d.get("interpolation") is None else d["interpolation"]),
                mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                crop_mode=str("center" if d.get("crop_mode") is None else d["crop_mode"]),
                source=source or str(d.get("source", "")),
            )
        except KeyError as e:
            raise ConfigError(f"data config is missing {e.args[0]!r} (needs mean and std)") from None


def from_timm(arch: str) -> DataConfig:
    """Resolve the eval data config of a timm pretrained tag from metadata only (no model built)."""
    import timm
    from timm.data import resolve_data_config

    cfg = timm.get_pretrained_cfg(arch, allow_unregistered=False)
    if cfg is None:
        raise ConfigError(f"timm has no pretrained config for {arch!r}")
    resolved = resolve_data_config(pretrained_cfg=cfg.to_dict())
    return DataConfig.from_dict(resolved, source=f"timm:{arch}")


def from_torchvision(weights: Any) -> DataConfig:
    """Read a torchvision weights enum's own eval transform (``weights.transforms()``)."""
    t = weights.transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
    interp = str(t.interpolation.value).lower()
    return DataConfig(
        input_size=(3, int(crop), int(crop)),
        crop_pct=float(crop) / float(resize),
        interpolation=interp,
        mean=tuple(float(v) for v in t.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in t.std),  # type: ignore[arg-type]
        source=f"torchvision:{weights}",
    )
