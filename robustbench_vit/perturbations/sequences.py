"""ImageNet-P perturbation sequences generated on the model's device (Hendrycks & Dietterich 2019).

Each function restates ``make_imagenet_p.py`` (hendrycks/robustness) for a batch: the source is the
ImageNet image resized to 256 on its short side; geometric sequences (zoom_blur, translate, rotate, tilt,
scale) transform that whole image and then take the 224 centre crop, the others perturb the 224 crop.
Frames are quantised as the reference's PNGs were (``np.uint8`` truncation, or rounding where PIL, OpenCV
or ImageMagick produced the pixels). The released sequences were then H.264-encoded; the suite's
``codec=h264`` adds that lossy step (:mod:`~robustbench_vit.perturbations.video_codec`), by default
generated frames skip it.

Input is a *canvas*: the short-side-256 image centred on a ``CANVAS`` x ``CANVAS`` black square (the
cache decodes it so, as torchvision's ``center_crop`` pads and crops), and the image's *extent*: where the
whole short-side-256 image lies in canvas coordinates (:func:`canvas_extent`, from the file's size; its
origin is negative when the image is wider than the canvas). Transforms use the whole image's extent
as the reference does (centre ``(w/2, h/2)``, tilt's focal length ``sqrt(w^2 + h^2)``, crop offsets),
and every output pixel reads inside the canvas: the most zoomed-out frame (``scale`` 0.4) samples
``224 / 0.4 = 560`` px around the centre, so a 576 px canvas holds every pixel any frame shows. The
extent is carried, never detected from the black padding (an image whose own border is black would
be mis-located).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import _get_inverse_affine_matrix

from robustbench_vit.perturbations.corruptions._ops import (
    clipped_zoom,
    dev_gen,
    motion_blur,
    quantize_floor,
    quantize_imagemagick,
    rgb_to_gray,
)
from robustbench_vit.perturbations.corruptions.digital import brightness
from robustbench_vit.replaced_code import ship

__all__ = [
    "CANVAS",
    "CROP",
    "RESIZE",
    "SEQUENCES",
    "NOISE_LEVELS",
    "SequenceSpec",
    "canvas_extent",
    "generate",
    "snow_sequence",
    "tilt_matrix",
]

#: the canvas holds the 560 px window the most zoomed-out ``scale`` frame samples (+ bilinear margin)
RESIZE, CROP, CANVAS = 256, 224, 576


@dataclass(frozen=True)
class SequenceSpec:
    """``frames`` per sequence; ``noise``: frames are compared with frame 0, not with their predecessor."""

    name: str
    frames: int
    noise: bool = False


SEQUENCES: dict[str, SequenceSpec] = {
    s.name: s
    for s in (
        SequenceSpec("gaussian_noise", 31, noise=True),
        SequenceSpec("shot_noise", 31, noise=True),
        SequenceSpec("motion_blur", 31),
        SequenceSpec("zoom_blur", 31),
        SequenceSpec("snow", 31),
        SequenceSpec("brightness", 31),
        SequenceSpec("translate", 41),
        SequenceSpec("rotate", 31),
        SequenceSpec("tilt", 31),
        SequenceSpec("scale", 31),
    )
}

#: noise strength per difficulty (1, 2, 3): Gaussian sigma and Poisson photon count of the reference
NOISE_LEVELS = {"gaussian_noise": (0.03, 0.05, 0.08), "shot_noise": (300.0, 120.0, 60.0)}
ship(__name__, "SEQUENCES", SEQUENCES)
ship(__name__, "NOISE_LEVELS", NOISE_LEVELS)


def _round8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def canvas_extent(sizes: list[tuple[int, int]], canvas: int = CANVAS) -> torch.Tensor:
    """(B, 4) float64 ``top, left, height, width`` of each short-side-256 image in canvas coordinates,
    from the ``(height, width)`` of the original files: torchvision's ``Resize(256)`` size rule (the long
    side truncated), then ``center_crop`` to ``canvas`` (pad ``(canvas - side) // 2`` before, or crop
    ``round((side - canvas) / 2)``, halves to even), as the image cache decodes the canvas."""
    out = []
    for h0, w0 in sizes:
        short, long = min(h0, w0), max(h0, w0)
        long_r = int(RESIZE * long / short)
        h, w = (RESIZE, long_r) if h0 <= w0 else (long_r, RESIZE)

        def origin(side: int) -> int:
            return (canvas - side) // 2 if side < canvas else -int(round((side - canvas) / 2.0))

        out.append([origin(h), origin(w), h, w])
    return torch.tensor(out, dtype=torch.float64)


def _crop_origin(ext: torch.Tensor) -> torch.Tensor:
    """(B, 2) top-left of the reference's 224 centre crop, in canvas pixels (torchvision rounds halves to even)."""
    top = ext[:, 0] + torch.round((ext[:, 2] - CROP) / 2)
    left = ext[:, 1] + torch.round((ext[:, 3] - CROP) / 2)
    return torch.stack([top, left], 1)


def _crop(canvas: torch.Tensor, ext: torch.Tensor) -> torch.Tensor:
    origin = _crop_origin(ext).long()
    return torch.stack([c[:, t : t + CROP, s : s + CROP] for c, (t, s) in zip(canvas, origin.tolist())])


def _sample(canvas: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of the canvas at continuous coordinates (pixel centres at k + 0.5), black outside."""
    height, width = canvas.shape[-2:]
    grid = torch.stack([2 * src_x / width - 1, 2 * src_y / height - 1], -1).to(canvas.dtype)
    return F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _crop_centres(ext: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous canvas coordinates (B, 224, 224) of the crop's pixel centres."""
    origin = _crop_origin(ext)
    r = torch.arange(CROP, dtype=torch.float64) + 0.5
    ys = origin[:, 0, None, None] + r[None, :, None]
    xs = origin[:, 1, None, None] + r[None, None, :]
    return xs.expand(-1, CROP, CROP).to(device), ys.expand(-1, CROP, CROP).to(device)


def _affine(
    canvas: torch.Tensor, ext: torch.Tensor, angle: float, translate: tuple[int, int], scale: float
) -> torch.Tensor:
    """torchvision ``F.affine`` on the PIL image (centre ``(w/2, h/2)``, bilinear), then the centre crop.

    As PIL's transform: a sample whose source lies outside the image is black, one inside interpolates
    between image pixels only (clamped at the image's edge, never blended with the black outside)."""
    xs, ys = _crop_centres(ext, canvas.device)
    top, left = ext[:, 0, None, None].to(xs), ext[:, 1, None, None].to(xs)
    out_x, out_y = xs - left, ys - top  # image coordinates
    src_x, src_y = torch.empty_like(out_x), torch.empty_like(out_y)
    for b in range(len(ext)):
        h, w = float(ext[b, 2]), float(ext[b, 3])
        m = _get_inverse_affine_matrix([w * 0.5, h * 0.5], angle, list(translate), scale, [0.0, 0.0])
        src_x[b] = m[0] * out_x[b] + m[1] * out_y[b] + m[2]
        src_y[b] = m[3] * out_x[b] + m[4] * out_y[b] + m[5]
    h, w = ext[:, 2, None, None].to(xs), ext[:, 3, None, None].to(xs)
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    src_x = torch.minimum(torch.maximum(src_x, torch.full_like(src_x, 0.5)), w - 0.5)
    src_y = torch.minimum(torch.maximum(src_y, torch.full_like(src_y, 0.5)), h - 0.5)
    out = _sample(canvas, src_x + left, src_y + top)
    return out * inside[:, None].to(out.dtype)


def tilt_matrix(h: float, w: float, degrees: float) -> torch.Tensor:
    """The reference's 3x3 homography (source -> destination, OpenCV pixel coordinates) for one tilt."""
    phi = theta = math.radians(degrees)
    f = math.hypot(w, h)
    p1 = torch.tensor([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    rx = torch.tensor(
        [
            [1, 0, 0, 0],
            [0, math.cos(theta), -math.sin(theta), 0],
            [0, math.sin(theta), math.cos(theta), 0],
            [0, 0, 0, 1],
        ],
        dtype=torch.float64,
    )
    ry = torch.tensor(
        [
            [math.cos(phi), 0, -math.sin(phi), 0],
            [0, 1, 0, 0],
            [math.sin(phi), 0, math.cos(phi), 0],
            [0, 0, 0, 1],
        ],
        dtype=torch.float64,
    )
    t = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=torch.float64)
    p2 = torch.tensor([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float64)
    return p2 @ t @ rx @ ry @ p1


def _tilt(canvas: torch.Tensor, ext: torch.Tensor, degrees: float) -> torch.Tensor:
    """``cv2.warpPerspective`` (bilinear, black border) of the whole image, then the centre crop."""
    xs, ys = _crop_centres(ext, canvas.device)
    src_x, src_y = torch.empty_like(xs), torch.empty_like(ys)
    for b in range(len(ext)):
        top, left, h, w = (float(v) for v in ext[b])
        inv = torch.linalg.inv(tilt_matrix(h, w, degrees)).to(xs.device)
        # OpenCV coordinates put pixel centres on integers
        dx, dy = xs[b] - left - 0.5, ys[b] - top - 0.5
        den = inv[2, 0] * dx + inv[2, 1] * dy + inv[2, 2]
        src_x[b] = (inv[0, 0] * dx + inv[0, 1] * dy + inv[0, 2]) / den + left + 0.5
        src_y[b] = (inv[1, 0] * dx + inv[1, 1] * dy + inv[1, 2]) / den + top + 0.5
    return _sample(canvas, src_x, src_y)


def snow_sequence(x: torch.Tensor, layer: torch.Tensor) -> list[torch.Tensor]:
    """The 31 snow frames of (B, 3, 224, 224) crops from (B, 1, 224, 224) N(0.05, 0.3) draws: the layer is
    zoomed x3 (centre, order 1), thresholded at 0.5 and stored as 8 bits, then per frame motion-blurred
    (radius 14, sigma 4, angle 4i - 150) and added with its 180-degree rotation to the brightened image."""
    layer = clipped_zoom(layer, 3)
    top = (layer.shape[-2] - CROP) // 2
    layer = layer[..., top : top + CROP, top : top + CROP]
    layer = quantize_floor(torch.where(layer < 0.5, torch.zeros_like(layer), layer))
    base = 0.85 * x + 0.15 * torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    frames = []
    for i in range(31):
        # ImageMagick blurs the layer and writes 8 bits, which the reference reads back as they are
        s = quantize_imagemagick(motion_blur(layer, 14, 4.0, [i * 4.0 - 150] * len(x))).to(x.dtype)
        frames.append(quantize_floor(base + s + torch.rot90(s, 2, dims=(-2, -1))))
    return frames


def generate(
    name: str, canvas: torch.Tensor, ext: torch.Tensor, generator: torch.Generator, difficulty: int = 1
) -> torch.Tensor:
    """(frames, B, 3, 224, 224) frames in [0, 1] of sequence ``name`` for (B, 3, CANVAS, CANVAS) canvases
    holding images at ``ext`` (:func:`canvas_extent`)."""
    spec = SEQUENCES[name]
    if ext.shape != (len(canvas), 4):
        raise ValueError(f"extent must be (B, 4) for {len(canvas)} canvases, got {tuple(ext.shape)}")
    ext = ext.to(torch.float64).cpu()
    x = _crop(canvas, ext)
    frames: list[torch.Tensor] = []
    if name == "gaussian_noise":
        sigma = NOISE_LEVELS[name][difficulty - 1]
        g = dev_gen(x, generator)
        frames = [x] + [
            quantize_floor(x + sigma * torch.randn(x.shape, generator=g, device=x.device)) for _ in range(30)
        ]
    elif name == "shot_noise":
        lam = NOISE_LEVELS[name][difficulty - 1]
        g = dev_gen(x, generator)
        frames = [x] + [quantize_floor(torch.poisson(x * lam, generator=g) / lam) for _ in range(30)]
    elif name == "motion_blur":
        # each frame is ImageMagick's 8-bit output (make_imagenet_p.py's MotionImage, saved as it is)
        frames = [quantize_imagemagick(motion_blur(x, 10, 3.0, [(i - 30) * 4.0] * len(x))) for i in range(31)]
    elif name == "zoom_blur":
        total = x.double()
        frames = [x]
        for i in range(1, 31):
            total = total + _round8(_affine(canvas, ext, 0.0, (0, 0), 1 + 0.004 * i)).double()
            frames.append(quantize_floor((total / (i + 1)).to(x.dtype)))
    elif name == "snow":
        g = dev_gen(x, generator)
        noise = torch.randn(len(x), 1, CROP, CROP, generator=g, device=x.device, dtype=torch.float64)
        frames = snow_sequence(x, noise * 0.3 + 0.05)
    elif name == "brightness":
        frames = [brightness(x, (i - 15) * 2 / 100.0) for i in range(31)]  # floored as np.uint8 does
    elif name == "translate":
        frames = [_round8(_affine(canvas, ext, 0.0, (i - 20, 0), 1.0)) for i in range(41)]
    elif name == "rotate":
        frames = [_round8(_affine(canvas, ext, float(i - 15), (0, 0), 1.0)) for i in range(31)]
    elif name == "tilt":
        frames = [_round8(_tilt(canvas, ext, float(i - 15))) for i in range(31)]
    elif name == "scale":
        frames = [_round8(_affine(canvas, ext, 0.0, (0, 0), (i * 2.5 + 40) / 100.0)) for i in range(31)]
    else:
        raise KeyError(name)
    assert len(frames) == spec.frames
    return torch.stack(frames)
