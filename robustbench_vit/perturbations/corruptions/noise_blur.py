"""Noise and blur corruptions (batched torch; images (B, 3, H, W) in [0, 1] on any device)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from robustbench_vit.device import to_device
from robustbench_vit.perturbations.corruptions._ops import (
    clipped_zoom,
    disk_kernel,
    fft_correlate,
    gaussian_filter,
    motion_blur,
    quantize_floor,
)


def gaussian_noise(x: torch.Tensor, c: float, gen: torch.Generator) -> torch.Tensor:
    return x + c * torch.randn(x.shape, generator=gen, device=x.device)


def shot_noise(x: torch.Tensor, c: float, gen: torch.Generator) -> torch.Tensor:
    return torch.poisson(x * c, generator=gen) / c


def impulse_noise(x: torch.Tensor, c: float, gen: torch.Generator) -> torch.Tensor:
    """Salt and pepper on a fraction ``c`` of the values (each channel independently, as skimage's s&p)."""
    r = torch.rand(x.shape, generator=gen, device=x.device)
    return torch.where(r < c / 2, torch.zeros_like(x), torch.where(r < c, torch.ones_like(x), x))


def speckle_noise(x: torch.Tensor, c: float, gen: torch.Generator) -> torch.Tensor:
    return x + x * c * torch.randn(x.shape, generator=gen, device=x.device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_filter(x, sigma, mode="nearest")  # skimage.filters.gaussian defaults


def defocus_blur(x: torch.Tensor, c: tuple[float, float]) -> torch.Tensor:
    return fft_correlate(x, disk_kernel(*c), mode="reflect101")  # cv2.filter2D's default border


def zoom_blur(x: torch.Tensor, c: tuple[float, float, float], trim: str = "corner") -> torch.Tensor:
    """Mean of the image and its centre crops zoomed by each factor. ``trim='corner'`` keeps the top-left
    H x W of each zoom (imagecorruptions), ``'centre'`` its centre (CIFAR-10-C's make_cifar_c)."""
    h, w = x.shape[-2:]
    factors = np.arange(*c)
    out = torch.zeros_like(x)
    for z in factors:
        zoomed = clipped_zoom(x, z)
        top = (zoomed.shape[-2] - h) // 2 if trim == "centre" else 0
        left = (zoomed.shape[-1] - w) // 2 if trim == "centre" else 0
        out += zoomed[..., top : top + h, left : left + w]
    return (x + out) / (len(factors) + 1)


def motion_blur_at(x: torch.Tensor, c: tuple[int, float], angles: list[float]) -> torch.Tensor:
    """Motion blur with given per-image angles (degrees); the reference draws them from U(-45, 45)."""
    return motion_blur(x, c[0], c[1], angles)


def motion_blur_random(
    x: torch.Tensor, c: tuple[int, float], generator: torch.Generator | None
) -> torch.Tensor:
    angles = (torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 90 - 45).tolist()
    return motion_blur_at(x, c, angles)


_PERMUTE = None


def _glass_permuter():  # noqa: ANN202 - returns a numba dispatcher
    """Compile (once) the reference's sequential local pixel-"swap" loop, run on an index map instead of
    pixels, with the draws the reference makes for the same seed.

    The reference seeds numba's Mersenne Twister and calls ``np.random.randint(-delta, delta)`` per
    value: one 32-bit output, masked to the range's bit width, rejected past the range (numpy's
    legacy algorithm, which numba follows). The generator is written out here (MT19937 seeding,
    twist, tempering) so each value costs a few integer operations instead of a library call:
    about 2x faster, and the same stream (a test checks against the reference's own loop).
    """
    global _PERMUTE
    if _PERMUTE is None:
        from numba import njit

        @njit(cache=False, nogil=True)
        def twist(mt: np.ndarray) -> None:  # pragma: no cover - compiled
            for i in range(624):
                j = i + 1 if i < 623 else 0
                m = i + 397 if i < 227 else i - 227
                y = (mt[i] & 0x80000000) | (mt[j] & 0x7FFFFFFF)
                mt[i] = mt[m] ^ (y >> 1) ^ ((y & 1) * 0x9908B0DF)

        @njit(cache=False, nogil=True)
        def permutation(
            h: int, w: int, delta: int, iterations: int, seed: int
        ) -> np.ndarray:  # pragma: no cover - compiled
            mt = np.empty(624, np.int64)  # 32-bit words held in int64: no overflow in the seeding product
            mt[0] = seed & 0xFFFFFFFF
            for i in range(1, 624):
                mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
            pos = 624
            top = 2 * delta - 1  # randint(-delta, delta) is -delta + a value in 0..top
            mask = 1
            while mask < top:
                mask = (mask << 1) | 1
            idx = np.arange(h * w).reshape(h, w)
            for _ in range(iterations):
                for r in range(h - delta, delta, -1):
                    for q in range(w - delta, delta, -1):
                        dx = dy = 0
                        for k in range(2):  # the reference draws (dx, dy) per pixel
                            while True:
                                if pos == 624:
                                    twist(mt)
                                    pos = 0
                                y = mt[pos]
                                pos += 1
                                y ^= y >> 11
                                y ^= (y << 7) & 0x9D2C5680
                                y ^= (y << 15) & 0xEFC60000
                                y ^= y >> 18
                                v = y & mask
                                if v <= top:
                                    break
                            if k == 0:
                                dx = v - delta
                            else:
                                dy = v - delta
                        # The reference "swaps" two pixel views of an (H, W, 3) array, which copies
                        # (r2, q2) into (r, q) and leaves (r2, q2) as it was; so do we.
                        idx[r, q] = idx[r + dy, q + dx]
            return idx.reshape(-1).astype(np.int32)  # half the bytes to ship to a GPU

        _PERMUTE = permutation
    return _PERMUTE


def glass_permutations(h: int, w: int, delta: int, iterations: int, seeds: list[int]) -> torch.Tensor:
    """(B, H*W) source index of every output pixel after the reference's swap loop, one seed per image.

    The loop is order dependent (a pixel can be swapped several times), so it is reproduced exactly,
    sequentially, on the CPU; only the index map leaves it, the pixels are gathered on the device.
    """
    fn = _glass_permuter()
    workers = min(len(seeds), os.cpu_count() or 1)
    if workers <= 1:
        return torch.from_numpy(np.stack([fn(h, w, delta, iterations, int(s)) for s in seeds]))
    # the compiled loop releases the GIL; each call holds its own generator state
    with ThreadPoolExecutor(workers) as pool:
        return torch.from_numpy(
            np.stack(list(pool.map(lambda s: fn(h, w, delta, iterations, int(s)), seeds)))
        )


def glass_blur_with_seeds(x: torch.Tensor, c: tuple[float, int, int], seeds: list[int]) -> torch.Tensor:
    """Blur, quantise to uint8 (as the reference), shuffle pixels locally (exact swap loop), blur again."""
    b, ch, h, w = x.shape
    y = quantize_floor(gaussian_filter(x, c[0], mode="nearest"))
    perm = to_device(glass_permutations(h, w, c[1], c[2], seeds), x.device).long()
    y = torch.gather(y.reshape(b, ch, h * w), 2, perm[:, None, :].expand(b, ch, h * w)).reshape(b, ch, h, w)
    return gaussian_filter(y, c[0], mode="nearest")


def glass_blur(x: torch.Tensor, c: tuple[float, int, int], generator: torch.Generator | None) -> torch.Tensor:
    seeds = torch.randint(0, 2**31 - 1, (x.shape[0],), generator=generator).tolist()
    return glass_blur_with_seeds(x, c, seeds)
