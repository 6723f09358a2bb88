"""Weather corruptions: fog, frost, snow (batched torch; images (B, 3, H, W) in [0, 1])."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from robustbench_vit.device import to_device
from robustbench_vit.errors import DataError
from robustbench_vit.installed_code import module_distributions, recorded_sha256_of
from robustbench_vit.perturbations.corruptions._ops import (
    clipped_zoom,
    dev_gen,
    motion_blur,
    quantize_imagemagick,
    rgb_to_gray,
)


def plasma_fractal(
    batch: int,
    mapsize: int,
    decay: float,
    uniform: Callable[[tuple[int, int]], torch.Tensor],
    device: torch.device,
) -> torch.Tensor:
    """(B, mapsize, mapsize) diamond-square height maps in [0, 1]: the reference's algorithm, batched.
    ``uniform(shape)`` returns (B, *shape) samples of U[0, 1), consumed in the reference's order."""
    m = torch.zeros(batch, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * (to_device(uniform(tuple(a.shape[1:])), device, a.dtype) * 2 - 1) * wibble

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = wibbled(sq)
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2))
        m[:, half::step, 0::step] = wibbled(dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1))
        step //= 2
        wibble /= decay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def fog_with(
    x: torch.Tensor, c: tuple[float, float], uniform: Callable[[tuple[int, int]], torch.Tensor]
) -> torch.Tensor:
    """Fog: add c[0] x a plasma fractal (decay c[1], size the next power of two) and rescale so the
    image maximum is kept."""
    b, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    fractal = plasma_fractal(b, size, c[1], uniform, x.device)[:, None, :h, :w]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c[0] * fractal) * max_val / (max_val + c[0])


def fog(x: torch.Tensor, c: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    return fog_with(x, c, lambda shape: torch.rand((len(x), *shape), generator=gen, device=x.device))


def _frost_dir() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("imagecorruptions") / "frost"))


def _installed_photo(path: Path) -> np.ndarray:
    """One frost photograph, BGR uint8, refused unless it holds the bytes its package installed (a photo
    replaced or damaged since would be another corruption under the same name and package version)."""
    import cv2

    data = path.read_bytes()
    recorded = [
        expected
        for dist in module_distributions().get("imagecorruptions", [])
        if (expected := recorded_sha256_of(dist, f"imagecorruptions/frost/{path.name}")) is not None
    ]
    if recorded and hashlib.sha256(data).hexdigest() not in recorded:
        raise DataError(
            f"imagecorruptions' frost photograph {path} is not the file its package installed (its SHA-256 "
            "differs); reinstall it: pip install --force-reinstall imagecorruptions-imaug"
        )
    photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if photo is None:
        raise DataError(f"cannot read imagecorruptions' frost photograph {path}; reinstall imagecorruptions")
    return photo


@functools.lru_cache(maxsize=1)
def _frost_photos() -> tuple[np.ndarray, ...]:
    """The reference's six frost photographs (shipped in the imagecorruptions package), BGR uint8."""
    root = _frost_dir()
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
    return tuple(_installed_photo(root / name) for name in names)


@functools.lru_cache(maxsize=16)
def _frost_layers(style: str, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The photos resized as the reference does for an h x w image (uint8 resize, RGB, [0, 1]), on the
    device: computed once per image size instead of once per image."""
    import cv2

    out = []
    for bgr in _frost_photos()[: 6 if style == "imagenet" else 5]:
        fh, fw = bgr.shape[:2]
        if style == "imagenet_c_release":  # make_imagenet_c: the first 5 photos, cropped as they are
            resized = bgr
        elif style == "imagenet":
            scale = 1.1 * max(1.0, h / fh, w / fw)
            resized = cv2.resize(
                bgr, (int(np.ceil(fw * scale)), int(np.ceil(fh * scale))), interpolation=cv2.INTER_CUBIC
            )
        else:
            resized = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)
        out.append(torch.from_numpy(resized[..., ::-1].copy()).permute(2, 0, 1).to(device).float() / 255)
    return tuple(out)


def frost_with(
    x: torch.Tensor, c: tuple[float, float], picks: list[tuple[int, int, int]], style: str = "imagenet"
) -> torch.Tensor:
    """Blend with crops of the frost photographs: ``picks`` holds (photo, top, left) per image."""
    h, w = x.shape[-2:]
    photos = _frost_layers(style, h, w, x.device)
    layers = [photos[i][:, top : top + h, left : left + w] for i, top, left in picks]
    return c[0] * x + c[1] * torch.stack(layers)


def frost(
    x: torch.Tensor, c: tuple[float, float], generator: torch.Generator | None, style: str = "imagenet"
) -> torch.Tensor:
    """Blend with a random crop of a frost photograph. ``imagenet``: one of 6 photos enlarged to cover
    the image x 1.1 (cubic); ``cifar10``: one of the first 5 shrunk to 0.2 (bilinear), as make_cifar_c;
    ``imagenet_c_release``: one of the first 5 at their own size, as make_imagenet_c."""
    b, _, h, w = x.shape
    photos = _frost_layers(style, h, w, x.device)
    if any(p.shape[1] <= h or p.shape[2] <= w for p in photos):
        from robustbench_vit.errors import ConfigError

        small = min(min(p.shape[1:]) for p in photos)
        raise ConfigError(
            f"frost with the {style} table needs images under {small} px (the shrunk frost photos), "
            f"got {h}x{w}; use table=imagenet"
        )
    picks = []
    for _ in range(b):
        i = int(torch.randint(0, len(photos), (1,), generator=generator))
        top = int(torch.randint(0, photos[i].shape[1] - h, (1,), generator=generator))
        left = int(torch.randint(0, photos[i].shape[2] - w, (1,), generator=generator))
        picks.append((i, top, left))
    return frost_with(x, c, picks, style)


def snow_with(
    x: torch.Tensor,
    c: tuple,
    noise: torch.Tensor,
    angles: list[float],
    trim: str = "corner",
    quantize: Literal["round", "imagemagick"] = "round",
) -> torch.Tensor:
    """Snow from given draws: ``noise`` (B, H, W) ~ N(c[0], c[1]) and per-image blur angles in degrees.

    The noise is zoomed by c[2] (centre crop, order-1), thresholded at c[3], motion-blurred (radius c[4],
    sigma c[5]), quantised to uint8, cropped to H x W (``corner``: top-left as imagecorruptions,
    ``centre`` as make_cifar_c) and added twice (as is and rotated 180 degrees) to the image, which is
    first brightened towards its grey level with weight 1 - c[6].

    ``quantize``: ``round`` as imagecorruptions (``np.round`` after its own blur); ``imagemagick`` as
    make_imagenet_c.py / make_cifar_c.py, which store the layer as an 8-bit image before ImageMagick's
    blur (``astype(np.uint8)``: the floor) and get ImageMagick's 8-bit result back
    (:func:`~robustbench_vit.perturbations.corruptions._ops.quantize_imagemagick`).
    """
    h, w = x.shape[-2:]
    layer = clipped_zoom(noise[:, None].to(x.device, torch.float64), c[2])  # float64 as the reference: the
    # layer is rounded to uint8 below, and float32 would move values across the rounding boundaries
    layer = torch.where(layer < c[3], torch.zeros_like(layer), layer).clamp(0, 1)
    if quantize == "imagemagick":
        layer = torch.floor(layer * 255) / 255
    if trim == "centre":  # make_cifar_c trims the zoomed layer before blurring it
        top, left = (layer.shape[-2] - h) // 2, (layer.shape[-1] - w) // 2
        layer = layer[..., top : top + h, left : left + w]
    layer = motion_blur(layer, c[4], c[5], angles)
    if quantize == "imagemagick":
        layer = quantize_imagemagick(layer)
    else:
        layer = torch.round(layer * 255).clamp(0, 255) / 255
    layer = layer[..., :h, :w].to(x.dtype)
    x = c[6] * x + (1 - c[6]) * torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    return x + layer + torch.rot90(layer, 2, dims=(-2, -1))


def snow(
    x: torch.Tensor,
    c: tuple,
    generator: torch.Generator | None,
    trim: str = "corner",
    quantize: Literal["round", "imagemagick"] = "round",
) -> torch.Tensor:
    b, _, h, w = x.shape
    noise = (
        torch.randn(b, h, w, generator=dev_gen(x, generator), device=x.device, dtype=torch.float64) * c[1]
        + c[0]
    )
    angles = (torch.rand(b, generator=generator, dtype=torch.float64) * 90 - 135).tolist()
    return snow_with(x, c, noise, angles, trim, quantize)
