"""Digital corruptions: brightness, contrast, saturate, jpeg, pixelate, elastic (batched torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_vit.device import to_device
from robustbench_vit.perturbations.corruptions._ops import gaussian_filter, pil_box_resize, symmetric_index


def _value_scale(x: torch.Tensor, new_v: torch.Tensor) -> torch.Tensor:
    """Replace HSV value V = max(r, g, b) by ``new_v`` keeping hue and saturation."""
    v = x.amax(dim=1, keepdim=True)
    scaled = x * (new_v / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, new_v.expand_as(x))


def brightness(x: torch.Tensor, c: float) -> torch.Tensor:
    return _value_scale(x, (x.amax(dim=1, keepdim=True) + c).clamp(0, 1))


def contrast(x: torch.Tensor, c: float) -> torch.Tensor:
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * c + m


def saturate(x: torch.Tensor, c: tuple[float, float]) -> torch.Tensor:
    """HSV saturation S <- clip(S * mul + add, 0, 1), hue and value kept (skimage conventions)."""
    mul, add = c
    v = x.amax(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - x.amin(dim=1, keepdim=True)) / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * mul + add).clamp(0, 1)
    out = v - (v - x) * s_new / s.clamp_min(1e-12)
    # grey pixels have hue 0 (red): r = V, g = b = V (1 - S')
    grey = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(s > 0, out, grey)


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
