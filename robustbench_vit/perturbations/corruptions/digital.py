"""Digital corruptions: brightness, contrast, saturate, jpeg, pixelate, elastic (batched torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_vit.device import to_device
from robustbench_vit.perturbations.corruptions._ops import gaussian_filter, pil_box_resize, symmetric_index


def on_uint8_grid_float64(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float64; values on the uint8 grid become exactly ``k / 255.`` (what ``np.array(img) / 255.``
    gives the reference), others are widened as they are."""
    v = x.double() * 255
    k = v.round()
    return torch.where((v - k).abs() < 1e-3, k / 255.0, x.double())


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float64 RGB -> HSV with skimage's ``rgb2hsv`` arithmetic, operation by operation (ties of
    the maximum resolve as its successive assignments do: blue over green over red)."""
    r, g, b = rgb.unbind(1)
    v = rgb.amax(1)
    delta = v - rgb.amin(1)  # np.ptp
    zero = delta == 0
    s = torch.where(zero, torch.zeros_like(v), delta / torch.where(zero, torch.ones_like(v), v))
    safe = torch.where(zero, torch.ones_like(delta), delta)
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.fmod(h / 6.0, 1.0)  # numpy's % 1.0: fmod, then + 1 where negative
    h = torch.where(h < 0, h + 1.0, h)
    h = torch.where(zero, torch.zeros_like(h), h)
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float64 HSV -> RGB with skimage's ``hsv2rgb`` arithmetic."""
    h, s, v = hsv.unbind(1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = (hi.to(torch.int64) % 256 % 6)[:, None].expand(-1, 3, -1, -1)  # astype(np.uint8) % 6
    choices = torch.stack(
        [
            torch.stack((v, t, p), 1),
            torch.stack((q, v, p), 1),
            torch.stack((p, v, t), 1),
            torch.stack((p, q, v), 1),
            torch.stack((t, p, v), 1),
            torch.stack((v, p, q), 1),
        ]
    )
    return torch.gather(choices, 0, sector[None]).squeeze(0)


def _floored(rgb: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``np.uint8(np.clip(rgb, 0, 1) * 255)`` in float64, back in [0, 1] in ``like``'s dtype."""
    return (torch.floor(rgb.clamp(0, 1) * 255) / 255).to(like.dtype)


def brightness(x: torch.Tensor, c: float) -> torch.Tensor:
    """HSV value V <- clip(V + c, 0, 1), as the reference scripts through skimage (float64, the same
    operations in the same order), returned floored to the uint8 grid as their ``np.uint8`` stores it."""
    hsv = rgb_to_hsv(on_uint8_grid_float64(x))
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return _floored(hsv_to_rgb(hsv), x)


def contrast(x: torch.Tensor, c: float) -> torch.Tensor:
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * c + m


def saturate(x: torch.Tensor, c: tuple[float, float]) -> torch.Tensor:
    """HSV saturation S <- clip(S * mul + add, 0, 1) through skimage's arithmetic (see :func:`brightness`),
    floored to the uint8 grid."""
    mul, add = c
    hsv = rgb_to_hsv(on_uint8_grid_float64(x))
    hsv[:, 1] = (hsv[:, 1] * mul + add).clamp(0, 1)
    return _floored(hsv_to_rgb(hsv), x)


def jpeg_compression(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode/decode with libjpeg (nvjpeg on CUDA) at ``quality`` via torchvision."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    cpu = u8.cpu() if x.device.type != "cuda" else u8
    encoded = encode_jpeg(list(cpu), quality=quality)
    decoded = decode_jpeg(encoded, device=x.device if x.device.type == "cuda" else "cpu")
    return torch.stack(list(decoded)).to(x.device).float() / 255


def pixelate(x: torch.Tensor, c: float, upsample: str = "nearest") -> torch.Tensor:
    """PIL BOX downsampling to int(size * c), then NEAREST (imagecorruptions) or BOX (make_cifar_c)
    upsampling, each as Pillow computes it on uint8 images (two fixed-point passes with a uint8 rounding
    between them: :func:`pil_box_resize`), so the result equals the reference pixel for pixel."""
    h, w = x.shape[-2:]
    sh, sw = int(h * c), int(w * c)
    small = pil_box_resize(x, (sh, sw))
    if upsample == "nearest":
        return F.interpolate(small, size=(h, w), mode="nearest-exact")
    return pil_box_resize(small, (h, w))


def remap_bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``scipy.ndimage.map_coordinates(order=1, mode='reflect')`` per channel: sample (B, C, H, W) at
    float64 coordinates (B, H, W), half-sample-symmetric outside the image."""
    b, ch, h, w = x.shape
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0).to(x.dtype), (cols - c0).to(x.dtype)
    r0, c0 = r0.long(), c0.long()
    flat = x.reshape(b, ch, h * w)
    out = torch.zeros_like(x)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            idx = symmetric_index(r0 + dr, h) * w + symmetric_index(c0 + dc, w)
            vals = torch.gather(flat, 2, idx.reshape(b, 1, h * w).expand(b, ch, h * w)).reshape(b, ch, h, w)
            out += (wr * wc)[:, None] * vals
    return out


def elastic_with(
    x: torch.Tensor, alpha: float, sigma: tuple[float, float], ux: torch.Tensor, uy: torch.Tensor
) -> torch.Tensor:
    """Elastic warp from given uniform fields ``ux``, ``uy`` (B, H, W): displacements are the fields
    Gaussian-smoothed (``sigma`` per axis, scipy 'reflect', truncate 3) times ``alpha``, in float32 as
    the reference; pixels are resampled bilinearly with half-sample reflection."""
    h, w = x.shape[-2:]
    dx = (
        gaussian_filter(to_device(ux, x.device, torch.float64), sigma, mode="symmetric", truncate=3) * alpha
    ).float()
    dy = (
        gaussian_filter(to_device(uy, x.device, torch.float64), sigma, mode="symmetric", truncate=3) * alpha
    ).float()
    rows = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1) + dy.double()
    cols = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w) + dx.double()
    return remap_bilinear(x, rows, cols)


def elastic_transform(x: torch.Tensor, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """imagecorruptions' elastic transform: sigma 1% of the size, uniform fields of +-0.5% of the height."""
    b, _, h, w = x.shape
    m = h * 0.005
    ux = (torch.rand(b, h, w, generator=gen, device=x.device, dtype=torch.float64) * 2 - 1) * m
    uy = (torch.rand(b, h, w, generator=gen, device=x.device, dtype=torch.float64) * 2 - 1) * m
    return elastic_with(x, alpha, (h * 0.01, w * 0.01), ux, uy)


def elastic_cifar_with(
    x: torch.Tensor, c: tuple[float, float, float], jitter: torch.Tensor, ux: torch.Tensor, uy: torch.Tensor
) -> torch.Tensor:
    """make_cifar_c's elastic transform from given draws: the three control points (x, y) at the centre
    +- a third of the size move by ``jitter`` (B, 3, 2) (uniform in +-c[2] px), defining an affine
    warp (bilinear, reflect-101 border); then the displacement field from ``ux``, ``uy`` (B, H, W),
    uniform in +-1, smoothed with sigma c[1] and scaled by alpha c[0]."""
    b, _, h, w = x.shape
    centre, third = min(h, w) // 2, min(h, w) // 3
    src = torch.tensor(
        [
            [centre + third, centre + third],
            [centre + third, centre - third],
            [centre - third, centre - third],
        ],
        dtype=torch.float64,
    )
    dst = src + jitter.cpu().double()
    # inverse map (output pixel -> source pixel): the affine A with [dst 1] @ A = src, per image
    inv = torch.linalg.solve(
        torch.cat([dst, torch.ones(b, 3, 1, dtype=torch.float64)], dim=2), src.expand(b, 3, 2)
    )
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    grid_px = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3) @ inv  # (B, H*W, 2) as (x, y)
    norm = torch.tensor([2 / (w - 1), 2 / (h - 1)], dtype=torch.float64)
    grid = to_device((grid_px * norm - 1).reshape(b, h, w, 2), x.device, x.dtype)
    # align_corners=True reflects about the edge pixel centres: OpenCV's BORDER_REFLECT_101
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    return elastic_with(x, c[0], (c[1], c[1]), ux, uy) if c[0] else x


def elastic_cifar(x: torch.Tensor, c: tuple[float, float, float], gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    jitter = (torch.rand(b, 3, 2, generator=gen, device=x.device, dtype=torch.float64) * 2 - 1) * c[2]
    ux = torch.rand(b, h, w, generator=gen, device=x.device, dtype=torch.float64) * 2 - 1
    uy = torch.rand(b, h, w, generator=gen, device=x.device, dtype=torch.float64) * 2 - 1
    return elastic_cifar_with(x, c, jitter, ux, uy)
