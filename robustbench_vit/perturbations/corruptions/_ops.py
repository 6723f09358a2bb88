"""Batched torch building blocks shared by the corruption implementations.

Each helper states which reference operation (scipy / skimage / cv2 / PIL) it reproduces, including the
border mode, because border handling is where re-implementations silently drift.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.device import to_device


def dev_gen(x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
    """A generator on ``x``'s device, seeded from the CPU ``generator`` (reproducible per device)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=x.device).manual_seed(seed)


def quantize_floor(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """[0, 1] -> multiples of 1/255 by flooring, as ``np.uint8(np.clip(v, 0, 1) * 255)`` does.
    ``inplace`` reuses ``x``'s buffer (one pass, no allocations) for a tensor the caller owns."""
    if inplace:
        return x.clamp_(0, 1).mul_(255).floor_().div_(255)
    return torch.floor(x.clamp(0, 1) * 255) / 255


def quantize_imagemagick(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> multiples of 1/255 as ImageMagick (Q16, called through Wand by make_imagenet_c.py,
    make_cifar_c.py and make_imagenet_p.py) writes a blurred image to an 8-bit PNG: rounded to 16-bit
    quanta, then floored to 8 bits, ``floor(round(65535 v) / 257)``. That is ``floor(255 v)`` except within
    0.5/257 of a level below it, which it lifts to the level (0.4-0.9% of motion-blurred values);
    tests/test_imagemagick.py checks it against ImageMagick 6.9 Q16."""
    return torch.floor(torch.round(x.clamp(0, 1) * 65535) / 257) / 255


def symmetric_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Map integer indices onto 0..n-1 by half-sample reflection (scipy ``mode='reflect'``: d c b a | a b c d)."""
    r = torch.remainder(i, 2 * n)
    return torch.where(r >= n, 2 * n - 1 - r, r)


def pad_2d(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    """Pad the last two dims. ``nearest`` = edge replicate (scipy/skimage 'nearest', cv2 REPLICATE);
    ``reflect101`` = whole-sample mirror (cv2's default border); ``symmetric`` = half-sample mirror
    (scipy 'reflect')."""
    if ph == 0 and pw == 0:
        return x
    if mode == "nearest":
        return F.pad(x, (pw, pw, ph, ph), mode="replicate")
    if mode == "reflect101" and ph < x.shape[-2] and pw < x.shape[-1]:
        return F.pad(x, (pw, pw, ph, ph), mode="reflect")
    if mode not in ("symmetric", "reflect101"):
        raise ValueError(f"unknown pad mode {mode!r}")
    h, w = x.shape[-2:]
    if mode == "symmetric":
        rows = symmetric_index(torch.arange(-ph, h + ph, device=x.device), h)
        cols = symmetric_index(torch.arange(-pw, w + pw, device=x.device), w)
    else:  # reflect101 wider than the image: period 2n - 2

        def r101(i: torch.Tensor, n: int) -> torch.Tensor:
            r = torch.remainder(i, 2 * n - 2)
            return torch.where(r >= n, 2 * n - 2 - r, r)

        rows = r101(torch.arange(-ph, h + ph, device=x.device), h)
        cols = r101(torch.arange(-pw, w + pw, device=x.device), w)
    return x.index_select(-2, rows).index_select(-1, cols)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's Gaussian taps: radius ``int(truncate * sigma + 0.5)``, normalised (float64)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@functools.lru_cache(maxsize=64)
def _filter_matrix(n: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    """(n, n) float64 matrix applying the 1-D Gaussian along an axis with the border ``mode`` folded in."""
    k = gaussian_kernel1d(sigma, truncate)
    r = len(k) // 2
    banded = torch.zeros(n, n + 2 * r, dtype=torch.float64)
    for i in range(n):
        banded[i, i : i + 2 * r + 1] = k
    src = pad_2d(torch.arange(n, dtype=torch.float64).view(1, 1, n, 1), r, 0, mode)[0, 0, :, 0].long()
    return torch.zeros(n, n, dtype=torch.float64).index_add_(1, src, banded)


def gaussian_filter(
    x: torch.Tensor, sigma: float | tuple[float, float], mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """Separable Gaussian over the last two dims of (..., H, W), as ``scipy.ndimage.gaussian_filter`` /
    ``skimage.filters.gaussian`` (default ``mode='nearest'``, ``truncate=4``) with no blur across channels.

    Each axis is one matrix product with the border folded into the matrix: several times faster than
    a thin convolution on CPU, and a plain GEMM on GPU.
    """
    sh, sw = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    h, w = x.shape[-2:]
    mh = to_device(_filter_matrix(h, float(sh), truncate, mode), x.device, x.dtype) if sh > 1e-15 else None
    mw = to_device(_filter_matrix(w, float(sw), truncate, mode), x.device, x.dtype) if sw > 1e-15 else None
    if mh is not None:  # scipy skips an axis whose sigma is zero
        x = mh @ x
    if mw is not None:
        x = x @ mw.T
    return x


def _fast_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT lengths with large prime factors are several times slower)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_correlate(x: torch.Tensor, k: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size 2-D correlation (cv2.filter2D semantics, centred odd kernel) of every channel of
    (B, C, H, W) (float32, or float64 if given) with ``k`` (kh, kw) or one kernel per image (B, kh, kw), borders padded with ``mode``.

    Via FFT: several times faster than direct convolution for the 17-83 px blur kernels on CPU and GPU.
    """
    kh, kw = k.shape[-2:]
    rh, rw = kh // 2, kw // 2
    h, w = x.shape[-2:]
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    z = pad_2d(x.to(dtype), rh, rw, mode)
    big_h, big_w = z.shape[-2:]
    kp = torch.zeros(*k.shape[:-2], big_h, big_w, device=x.device, dtype=dtype)
    kp[..., :kh, :kw] = to_device(k, x.device, dtype).flip(-2, -1)
    if k.dim() == 3:
        kp = kp[:, None]
    size = (_fast_size(big_h), _fast_size(big_w))  # zero-padding further leaves the valid region intact
    y = torch.fft.irfft2(torch.fft.rfft2(z, s=size) * torch.fft.rfft2(kp, s=size), s=size)
    return y[..., kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w]


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk: a binary disk, normalised, then Gaussian-blurred (cv2)."""
    import cv2

    size = 8 if radius <= 8 else int(radius)
    ks = (3, 3) if radius <= 8 else (5, 5)
    grid = np.arange(-size, size + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return torch.from_numpy(cv2.GaussianBlur(disk, ksize=ks, sigmaX=alias_blur))


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Centre crop of size ceil(n / factor), zoomed by ``factor`` with order-1 interpolation
    (``scipy.ndimage.zoom(order=1)``: output round(n * factor), corners aligned). Not trimmed."""
    h, w = x.shape[-2:]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    return F.interpolate(
        crop, size=(round(ch * factor), round(cw * factor)), mode="bilinear", align_corners=True
    )


def motion_kernels(radius: int, sigma: float, angles: list[float], h: int, w: int) -> torch.Tensor:
    """One 2-D correlation kernel per angle (degrees) reproducing ``imagecorruptions``' motion blur:
    ``2 * radius + 1`` one-sided Gaussian taps, tap ``i`` shifted by the rounded point ``i`` px along
    the angle, stopping at the first shift as large as the image (the reference's border rule)."""
    width = 2 * radius + 1
    taps = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    taps = taps / taps.sum()
    shifts = []
    for angle in angles:
        py, px = width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle))
        hyp = math.hypot(py, px)
        s = []
        for i in range(width):
            dy, dx = -math.ceil((i * py) / hyp - 0.5), -math.ceil((i * px) / hyp - 0.5)
            if abs(dy) >= h or abs(dx) >= w:
                break
            s.append((dy, dx))
        shifts.append(s)
    p = max((max(abs(dy), abs(dx)) for s in shifts for dy, dx in s), default=0)
    k = torch.zeros(len(angles), 2 * p + 1, 2 * p + 1, dtype=torch.float64)
    for b, s in enumerate(shifts):
        for i, (dy, dx) in enumerate(s):  # shifted[h, w] = x[clamp(h - dy), clamp(w - dx)]
            k[b, p - dy, p - dx] += float(taps[i])
    return k


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles: list[float]) -> torch.Tensor:
    """Per-image motion blur of (B, C, H, W) at the given angles; borders replicate the edge pixel."""
    return fft_correlate(x, motion_kernels(radius, sigma, angles, *x.shape[-2:]), mode="nearest")


@functools.lru_cache(maxsize=64)
def box_matrix(n_in: int, n_out: int, *, exact: bool = False) -> torch.Tensor:
    """(n_out, n_in) weights of PIL's BOX resampling (pixel-centre membership, normalised); for
    upsampling PIL keeps a support of half an input pixel. ``exact``: float64, as Pillow computes them."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for j in range(n_out):
        centre, support = (j + 0.5) * scale, 0.5 * fscale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / fscale
            if -0.5 < t <= 0.5:  # PIL's box_filter
                m[j, i] = 1.0
        m[j] /= m[j].sum()
    return m if exact else m.float()


#: Pillow's fixed-point resampling precision for 8-bit images (``Resample.c``: 32 - 8 - 2 bits)
PIL_PRECISION_BITS = 22


def _fixed_point(m: torch.Tensor) -> torch.Tensor:
    """Pillow's ``normalize_coeffs_8bpc``: each double coefficient times 2**22, rounded half away from 0."""
    k = m.double() * (1 << PIL_PRECISION_BITS)
    return torch.where(k < 0, torch.ceil(k - 0.5), torch.floor(k + 0.5))


def pil_box_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``Image.resize(size, Image.BOX)`` of uint8 images given as [0, 1] floats, pixel for pixel: Pillow
    resamples horizontally first into an 8-bit image, then vertically, each pass accumulating integer
    levels times fixed-point coefficients from 2**21 and shifting right by 22 bits, clamped to 0..255.
    The integer sums (< 2**40) are exact in float64, so the matmuls reproduce them on any device."""
    h, w = x.shape[-2:]
    oh, ow = size
    half = float(1 << (PIL_PRECISION_BITS - 1))
    scale = float(1 << PIL_PRECISION_BITS)
    levels = torch.round(x.double() * 255)
    out = levels
    if ow != w:
        kw = to_device(_fixed_point(box_matrix(w, ow, exact=True)), x.device)
        out = torch.floor((out @ kw.T + half) / scale).clamp(0, 255)
    if oh != h:
        kh = to_device(_fixed_point(box_matrix(h, oh, exact=True)), x.device)
        out = torch.floor((kh @ out + half) / scale).clamp(0, 255)
    return (out / 255).to(x.dtype)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """cv2.COLOR_RGB2GRAY on floats: 0.299 R + 0.587 G + 0.114 B, shape (B, 1, H, W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
