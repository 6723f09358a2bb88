"""Common corruptions (Hendrycks & Dietterich 2019) as batched torch functions on the input's device.

All 19 corruptions (15 benchmark + 4 extra) with two parameter tables: ``imagenet`` (the ImageNet-C
tables, as in the ``imagecorruptions`` reference) and ``cifar10`` (the CIFAR-10-C tables of
``make_cifar_c.py``). Images are RGB in [0, 1], shape (B, 3, H, W); outputs are quantised to uint8
levels like the reference's. Random draws come from device generators seeded from the CPU ``generator``.

A third table, ``imagenet_c_release``, follows make_imagenet_c.py, the script that made the released
ImageNet-C files (its elastic constants with the affine step, unscaled frost photos, BOX pixelate
up-sampling, centre-trimmed zooms; :func:`jpeg_store` adds the JPEG q85 storage of the files).

Fidelity to the reference (``imagecorruptions``, ImageNet tables), checked in tests/test_corruptions*.py:
pixel-exact up to one uint8 level for the deterministic ones and for the random ones fed the
reference's own draws (motion_blur, glass_blur, snow, spatter, elastic_transform, fog, frost); in
distribution for the four noises. The ``cifar10`` table has no package reference: it follows
make_cifar_c.py. Both scripts blur motion_blur and snow with ImageMagick: imagecorruptions' restatement of
its kernel, quantised as ImageMagick writes 8 bits (tests/test_imagemagick.py checks against ImageMagick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.corruptions import digital, noise_blur, spatter, weather
from robustbench_vit.perturbations.corruptions._ops import dev_gen, quantize_floor, quantize_imagemagick
from robustbench_vit.perturbations.corruptions.reference import reference_corrupt
from robustbench_vit.perturbations.corruptions.tables import (
    ALL_CORRUPTIONS,
    CIFAR10,
    IMAGENET,
    TABLES,
    check_corruption,
)
from robustbench_vit.replaced_code import ship

__all__ = [
    "ALL_CORRUPTIONS",
    "TORCH_CORRUPTIONS",
    "PARAMS",
    "IMAGENET",
    "CIFAR10",
    "TABLES",
    "OPS",
    "corrupt",
    "reference_corrupt",
    "jpeg_store",
]

PARAMS = IMAGENET  # backwards-compatible name for the ImageNet table
#: images per call on the CPU: batches of 64 at 224 px spill out of cache and run 2-3x slower per image
CPU_CHUNK = 16
TORCH_CORRUPTIONS = ALL_CORRUPTIONS


#: one signature for every corruption: (images in [0, 1], severity parameters, CPU generator, table name)
CorruptionOp = Callable[[torch.Tensor, Any, "torch.Generator | None", str], torch.Tensor]


def _trim(table: str) -> str:
    """make_cifar_c and make_imagenet_c trim zoomed layers around the centre; imagecorruptions at the corner."""
    return "corner" if table == "imagenet" else "centre"


def _elastic(x: torch.Tensor, c: Any, g: torch.Generator | None, table: str) -> torch.Tensor:
    # imagecorruptions drops the random affine step that make_cifar_c and make_imagenet_c keep
    fn = digital.elastic_transform if table == "imagenet" else digital.elastic_cifar
    return fn(x, c, dev_gen(x, g))


def _noise(name: str) -> CorruptionOp:
    return lambda x, c, g, t: getattr(noise_blur, name)(x, c, dev_gen(x, g))


def _motion_blur(x: torch.Tensor, c: Any, g: torch.Generator | None, table: str) -> torch.Tensor:
    out = noise_blur.motion_blur_random(x, c, g)
    # the make_*_c scripts blur with ImageMagick, whose 8-bit output rounds to 16 bits before the floor
    return out if table == "imagenet" else quantize_imagemagick(out)


def _plain(fn: Callable[[torch.Tensor, Any], torch.Tensor]) -> CorruptionOp:
    return lambda x, c, g, t: fn(x, c)


#: the torch implementation of every corruption (adding one: a table entry per table plus an entry here)
OPS: dict[str, CorruptionOp] = {
    "gaussian_noise": _noise("gaussian_noise"),
    "shot_noise": _noise("shot_noise"),
    "impulse_noise": _noise("impulse_noise"),
    "speckle_noise": _noise("speckle_noise"),
    "defocus_blur": _plain(noise_blur.defocus_blur),
    "gaussian_blur": _plain(noise_blur.gaussian_blur),
    "glass_blur": lambda x, c, g, t: noise_blur.glass_blur(x, c, g),
    "motion_blur": _motion_blur,
    "zoom_blur": lambda x, c, g, t: noise_blur.zoom_blur(x, c, trim=_trim(t)),
    # the make_*_c scripts floor the layer before ImageMagick's blur and get its 8 bits back; imagecorruptions
    # rounds once
    "snow": lambda x, c, g, t: weather.snow(
        x, c, g, trim=_trim(t), quantize="round" if t == "imagenet" else "imagemagick"
    ),
    "frost": lambda x, c, g, t: weather.frost(x, c, g, style=t),
    "fog": lambda x, c, g, t: weather.fog(x, c, dev_gen(x, g)),
    "spatter": lambda x, c, g, t: spatter.spatter(x, c, dev_gen(x, g)),
    "elastic_transform": _elastic,
    "pixelate": lambda x, c, g, t: digital.pixelate(x, c, upsample="nearest" if t == "imagenet" else "box"),
    "jpeg_compression": _plain(digital.jpeg_compression),
    "brightness": _plain(digital.brightness),
    "contrast": _plain(digital.contrast),
    "saturate": _plain(digital.saturate),
}
#: outputs already on the uint8 grid (as PIL returns them, or floored in float64 as the HSV round trip
#: must be: its last bit decides the level): not quantised again
ON_UINT8_GRID = frozenset({"pixelate", "jpeg_compression", "brightness", "saturate"})
assert set(OPS) == set(ALL_CORRUPTIONS), "every corruption in the tables needs an op"
ship(__name__, "TABLES", TABLES)  # the binding corrupt() reads: rebinding it is another run


def jpeg_store(x: torch.Tensor, quality: int = 85) -> torch.Tensor:
    """Store and reload a batch as the released ImageNet-C files were stored: ``np.uint8`` (floor) then
    PIL JPEG at ``quality`` with ``optimize=True``. Returns [0, 1] floats on the input's device."""
    import io

    import numpy as np
    from PIL import Image

    arr = torch.floor(x.clamp(0, 1) * 255 + 1e-4).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for img in arr:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality, optimize=True)
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.asarray(im.convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device).float() / 255


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    *,
    generator: torch.Generator | None = None,
    table: str = "imagenet",
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1-5) to a batch in [0, 1] with the torch backend.

    Example:
        >>> y = corrupt(torch.rand(2, 3, 64, 64), "contrast", 3)
        >>> y.shape
        torch.Size([2, 3, 64, 64])
    """
    check_corruption(name)
    if table not in TABLES:
        raise ConfigError(f"unknown parameter table {table!r}; known: {', '.join(TABLES)}")
    if not 1 <= severity <= 5:
        raise ConfigError(f"severity must be 1..5, got {severity}")
    if x.device.type == "cpu" and len(x) > CPU_CHUNK:  # keep the working set in cache (2-3x faster)
        return torch.cat(
            [corrupt(part, name, severity, generator=generator, table=table) for part in x.split(CPU_CHUNK)]
        )
    c = TABLES[table][name][severity - 1]
    x = x.float()
    out = OPS[name](x, c, generator, table)
    if name in ON_UINT8_GRID:  # already on the uint8 grid, like PIL's output
        return out
    # the reference returns uint8 images: quantise the same way (values are floored by np.uint8),
    # in place on our own buffer (one pass instead of four allocations)
    if out.data_ptr() == x.data_ptr():
        out = out.clone()
    return quantize_floor(out, inplace=True)
