"""Spatter (water drops or mud), batched in torch, reproducing the reference's OpenCV chain.

Water (severities 1-3 in both tables): the blurred, thresholded noise layer is quantised to uint8, its
Canny edges (thresholds 50/150, L1 gradient) seed a chamfer distance transform (cv2.DIST_L2, 5x5 mask),
which is truncated at 20, box-blurred, histogram-equalised, embossed and box-blurred again; the drop
intensity is layer x that texture, normalised per image. Each OpenCV step below follows OpenCV's
integer/rounding conventions so the result matches the reference to the pixel for the same noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.device import to_device
from robustbench_vit.perturbations.corruptions._ops import gaussian_filter, pad_2d

_WATER = torch.tensor([175.0, 238.0, 238.0]) / 255  # pale turquoise
_MUD = torch.tensor([63.0, 42.0, 20.0]) / 255


def _shift(z: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """z[i + dy, j + dx] for a tensor padded by 1 on each side of the last two dims (interior view)."""
    h, w = z.shape[-2] - 2, z.shape[-1] - 2
    return z[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def canny(u8: torch.Tensor, low: int = 50, high: int = 150) -> torch.Tensor:
    """cv2.Canny(u8, low, high) (aperture 3, L1 magnitude) on (B, H, W) integer images -> bool edges."""
    z = pad_2d(u8[:, None].float(), 1, 1, "nearest")[:, 0]  # Sobel with BORDER_REPLICATE, separably
    hd = z[:, :, 2:] - z[:, :, :-2]
    vs = z[:, :, :-2] + 2 * z[:, :, 1:-1] + z[:, :, 2:]
    dx = (hd[:, :-2] + 2 * hd[:, 1:-1] + hd[:, 2:]).int()  # exact: |Sobel| <= 1020
    dy = (vs[:, 2:] - vs[:, :-2]).int()
    mag = dx.abs() + dy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # neighbours outside the image have magnitude 0
    ax, ay = dx.abs(), dy.abs() << 15
    tg22 = ax * 13573  # tan(22.5 deg) in 15-bit fixed point, as OpenCV
    tg67 = tg22 + (ax << 16)
    horizontal = (mag > _shift(mp, 0, -1)) & (mag >= _shift(mp, 0, 1))
    vertical = (mag > _shift(mp, -1, 0)) & (mag >= _shift(mp, 1, 0))
    same_sign = (dx ^ dy) >= 0
    diag_same = (mag > _shift(mp, -1, -1)) & (mag > _shift(mp, 1, 1))
    diag_diff = (mag > _shift(mp, -1, 1)) & (mag > _shift(mp, 1, -1))
    maximum = torch.where(
        ay < tg22, horizontal, torch.where(ay > tg67, vertical, torch.where(same_sign, diag_same, diag_diff))
    )
    weak = maximum & (mag > low)
    return _hysteresis(weak, weak & (mag > high))


def _hysteresis(weak: torch.Tensor, strong: torch.Tensor, steps_per_check: int = 4) -> torch.Tensor:
    """Grow ``strong`` through 8-connected ``weak`` pixels until nothing changes (boolean dilations;
    the fixed point is checked every few dilations, since each check waits for the device)."""
    h, w = weak.shape[-2:]
    edges = strong
    while True:
        before = edges
        for _ in range(steps_per_check):
            p = edges.new_zeros(edges.shape[0], h + 2, w + 2)
            p[:, 1:-1, 1:-1] = edges
            near = (
                p[:, :-2, :-2]
                | p[:, :-2, 1:-1]
                | p[:, :-2, 2:]
                | p[:, 1:-1, :-2]
                | p[:, 1:-1, 2:]
                | p[:, 2:, :-2]
                | p[:, 2:, 1:-1]
                | p[:, 2:, 2:]
            )
            edges = edges | (weak & near)
        if torch.equal(edges, before):
            return edges


#: cv2's DIST_L2 5x5 chamfer weights (float32 values, as OpenCV stores them)
_A, _B, _C = 1.0, float(np.float32(1.4)), float(np.float32(2.1969))
_FAR = 1e9


def chamfer_distance(zero: torch.Tensor) -> torch.Tensor:
    """cv2.distanceTransform(src, DIST_L2, 5) where ``zero`` marks src == 0: OpenCV's two raster passes,
    each row vectorised (the in-row sweep is a running minimum of d - j, plus j)."""
    b, h, w = zero.shape
    d = torch.where(zero, 0.0, _FAR).double()
    d = F.pad(d, (2, 2, 2, 2), value=_FAR)
    j = torch.arange(w + 4, device=d.device, dtype=torch.float64) * _A
    for rows, sign in ((range(2, h + 2), 1), (range(h + 1, 1, -1), -1)):
        for i in rows:
            p1, p2 = d[:, i - sign], d[:, i - 2 * sign]
            cand = torch.minimum(d[:, i, 2:-2], p1[:, 2:-2] + _A)
            cand = torch.minimum(cand, torch.minimum(p1[:, 1:-3], p1[:, 3:-1]) + _B)
            far = torch.minimum(torch.minimum(p1[:, :-4], p1[:, 4:]), torch.minimum(p2[:, 1:-3], p2[:, 3:-1]))
            cand = torch.minimum(cand, far + _C)
            if sign == 1:  # left to right: d[j] = min(d[j], d[j - 1] + a), a running minimum of d - j
                d[:, i, 2:-2] = torch.cummin(cand - j[2:-2], dim=1).values + j[2:-2]
            else:
                d[:, i, 2:-2] = torch.cummin((cand + j[2:-2]).flip(1), dim=1).values.flip(1) - j[2:-2]
    return d[:, 2:-2, 2:-2].float()


_MOVES = (  # the 5x5 mask's 16 moves, by weight: edge neighbours, diagonals, knight moves
    (_A, ((0, 1), (0, -1), (1, 0), (-1, 0))),
    (_B, ((1, 1), (1, -1), (-1, 1), (-1, -1))),
    (_C, ((1, 2), (1, -2), (-1, 2), (-1, -2), (2, 1), (2, -1), (-2, 1), (-2, -1))),
)


def chamfer_distance_relaxed(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """``chamfer_distance(zero).clamp(max=cap)`` in parallel steps instead of 2H sequential rows.

    Each step lowers every pixel to its best neighbour's distance plus the move's weight, over the
    mask's 16 moves at once: after k steps every distance reached by a path of at most k moves is
    final. Moves weigh at least 1, so ``ceil(cap)`` steps settle every distance up to ``cap``, and a
    larger one is still larger (it only ever falls to its true value), so capping gives the same
    result. Sums of the float32 weights are exact in float64, so the order of the additions (the
    raster passes' or these steps') cannot change a value. A GPU runs a step in a few launches
    where the raster passes take thousands; on a CPU the passes are cheaper.
    """
    _, h, w = zero.shape
    d = torch.where(zero, 0.0, _FAR).double()
    for step in range(math.ceil(cap / _A)):
        p = F.pad(d, (2, 2, 2, 2), value=_FAR)
        new = d
        for weight, moves in _MOVES:
            best = None
            for dy, dx in moves:
                view = p[:, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]
                best = view if best is None else torch.minimum(best, view)
            new = torch.minimum(new, best + weight)  # type: ignore[operator]
        if step % 4 == 3 and torch.equal(new, d):  # settled early (checked now and then: a sync)
            break
        d = new
    return d.float().clamp(max=cap)


def capped_chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """``chamfer_distance(zero).clamp(max=cap)``: raster passes on a CPU, parallel steps elsewhere."""
    if zero.device.type == "cpu":
        return chamfer_distance(zero).clamp(max=cap)
    return chamfer_distance_relaxed(zero, cap)


def _correlate3(z: torch.Tensor, k: list[list[float]]) -> torch.Tensor:
    """3x3 correlation of (B, H, W) with BORDER_REFLECT_101 in ``z``'s dtype, as nine shifted adds (a
    1-channel conv2d is several times slower on CPU)."""
    p = pad_2d(z[:, None], 1, 1, "reflect101")[:, 0]
    out = torch.zeros_like(z)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if k[dy + 1][dx + 1]:
                out += k[dy + 1][dx + 1] * _shift(p, dy, dx)
    return out


def box3(z: torch.Tensor) -> torch.Tensor:
    """cv2.blur(z, (3, 3)) sums (BORDER_REFLECT_101), before the 1/9 scaling: row sums, then column
    sums, in OpenCV's order."""
    p = pad_2d(z[:, None], 1, 1, "reflect101")[:, 0]
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def equalize_hist(u8: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist on (B, H, W) integer images 0..255 (float32 scale, round half to even)."""
    b = u8.shape[0]
    flat = u8.reshape(b, -1).long()
    total = flat.shape[1]
    hist = torch.zeros(b, 256, dtype=torch.long, device=u8.device).scatter_add_(
        1, flat, torch.ones_like(flat)
    )
    first = (hist > 0).long().argmax(1, keepdim=True)
    h0 = hist.gather(1, first)
    idx = torch.arange(256, device=u8.device)[None]
    above = torch.where(idx > first, hist, 0).cumsum(1)
    scale = torch.tensor(255.0, dtype=torch.float32) / (total - h0).clamp_min(1).float()
    lut = torch.round(above.float() * scale).clamp(0, 255)
    lut = torch.where(h0 == total, first.float().expand_as(lut), lut)
    return lut.gather(1, flat).reshape(u8.shape)


_EMBOSS = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]


def spatter_with(x: torch.Tensor, c: tuple, noise: torch.Tensor) -> torch.Tensor:
    """Spatter from a given noise layer ``noise`` (B, H, W) ~ N(c[0], c[1])."""
    liquid = gaussian_filter(to_device(noise, x.device, torch.float64), c[2], mode="nearest")
    liquid = torch.where(liquid < c[3], torch.zeros_like(liquid), liquid)
    if c[5] == 0:
        u8 = torch.floor(liquid * 255).clamp(0, 255)
        dist = capped_chamfer_distance(canny(u8), 20)  # distance to the nearest edge
        dist = torch.floor((box3(dist.double()) * (1 / 9)).float())  # float32 in, float64 sums (as cv2)
        dist = equalize_hist(dist)
        dist = torch.round(_correlate3(dist, _EMBOSS)).clamp(0, 255)
        dist = torch.round(box3(dist) * (1 / 9))  # uint8 blur: integer sums, rounded
        m = (u8.float() * dist)[:, None]
        m = m / m.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12) * c[4]
        return x + m * to_device(_WATER, x.device).view(1, 3, 1, 1)
    m = gaussian_filter((liquid > c[3]).float(), c[4], mode="nearest")
    m = torch.where(m < 0.8, torch.zeros_like(m), m)[:, None]
    return x * (1 - m) + m * to_device(_MUD, x.device).view(1, 3, 1, 1)


def spatter(x: torch.Tensor, c: tuple, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    noise = torch.randn(b, h, w, generator=gen, device=x.device).double() * c[1] + c[0]
    return spatter_with(x, c, noise)
