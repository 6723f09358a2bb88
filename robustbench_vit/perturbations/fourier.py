"""Fourier-domain perturbations: Fourier basis noise (Yin et al. 2019, "A Fourier Perspective on
Model Robustness in Computer Vision") and radial low/high/band-pass filtering (as used by Wang et
al. 2020 and Paul & Chen 2022, "Vision Transformers are Robust Learners").

Frequencies are indexed in the *centred* spectrum: (u, v) with u, v in [-H/2, H/2), (0, 0) = DC.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

from robustbench_vit.device import to_device
from robustbench_vit.errors import ConfigError

__all__ = [
    "fourier_basis",
    "half_plane_frequencies",
    "fourier_noise",
    "radial_mask",
    "frequency_filter",
    "FILTER_KINDS",
]

FilterKind = Literal["low", "high", "band_pass", "band_stop"]
FILTER_KINDS: tuple[str, ...] = get_args(FilterKind)


def fourier_basis(
    freqs: torch.Tensor | list[tuple[int, int]],
    size: tuple[int, int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Real Fourier basis images U_uv with unit L2 norm, shape (K, H, W).

    U_uv = cos(2 pi (u y / H + v x / W)) / ||.||: the real image whose 2-D spectrum has energy only
    at (u, v) and its mirror (-u, -v), i.e. the symmetric pair combined.
    """
    f = torch.as_tensor(freqs, dtype=torch.float64, device=device).view(-1, 2)
    h, w = size
    y = torch.arange(h, dtype=torch.float64, device=device).view(1, h, 1)
    x = torch.arange(w, dtype=torch.float64, device=device).view(1, 1, w)
    phase = 2 * math.pi * (f[:, 0].view(-1, 1, 1) * y / h + f[:, 1].view(-1, 1, 1) * x / w)
    basis = torch.cos(phase)
    basis = basis / basis.flatten(1).norm(dim=1).view(-1, 1, 1)
    return basis.float()


def half_plane_frequencies(radius: int, stride: int = 1) -> list[tuple[int, int]]:
    """Frequencies (u, v) in the square [-radius, radius]^2 on a ``stride`` grid, one of each
    mirror pair: u > 0, or u == 0 and v >= 0. Their mirrors (-u, -v) give the same basis image."""
    if radius < 0 or stride < 1:
        raise ConfigError("radius must be >= 0 and stride >= 1")
    grid = [c for c in range(-radius, radius + 1) if c % stride == 0]  # always contains 0 (DC)
    return [(u, v) for u in grid for v in grid if u > 0 or (u == 0 and v >= 0)]


def fourier_noise(
    x: torch.Tensor,
    basis: torch.Tensor,
    *,
    eps: float,
    generator: torch.Generator | None = None,
    clamp: bool = True,
) -> torch.Tensor:
    """``x + eps * r * U`` for every basis image, with an independent sign r per image and channel.

    Args:
        x: (B, C, H, W) in [0, 1].
        basis: (K, H, W) unit-norm basis images.
        eps: L2 norm of the perturbation per channel (Yin et al.: 4.0 at 32x32, 15.7 at 224x224).
        generator: CPU generator for the signs.
        clamp: clip the result to [0, 1] (the paper's protocol).

    Returns:
        (K * B, C, H, W): the batch perturbed by basis 0, then by basis 1, ...
    """
    b, c = x.shape[:2]
    k = basis.shape[0]
    signs = to_device(torch.randint(0, 2, (k, b, c), generator=generator) * 2 - 1, x.device, x.dtype)
    out = x.unsqueeze(0) + eps * signs[..., None, None] * to_device(basis, x.device, x.dtype)[:, None, None]
    out = out.reshape(k * b, *x.shape[1:])
    return out.clamp_(0.0, 1.0) if clamp else out


def radial_mask(
    size: tuple[int, int],
    kind: str,
    radius: float,
    radius2: float | None = None,
    *,
    soft: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H, W) mask over the *unshifted* FFT grid, selecting by distance d to the DC component.

    ``low`` keeps d < r, ``high`` keeps d >= r (so low + high = all), ``band_pass`` keeps
    r <= d < r2, ``band_stop`` the rest. ``soft`` uses Gaussian weights exp(-d^2 / 2r^2) for low
    (and 1 - that for high) instead of a hard edge.
    """
    if kind not in FILTER_KINDS:
        raise ConfigError(f"filter kind {kind!r} not in {FILTER_KINDS}")
    h, w = size
    fy = torch.fft.fftfreq(h, d=1.0 / h, device=device).view(h, 1)
    fx = torch.fft.fftfreq(w, d=1.0 / w, device=device).view(1, w)
    d = torch.sqrt(fy**2 + fx**2)
    if kind in ("band_pass", "band_stop"):
        if radius2 is None or radius2 < radius:
            raise ConfigError("band filters need radius2 >= radius")
        if soft:
            lo = 1 - torch.exp(-(d**2) / (2 * max(radius, 1e-6) ** 2)) if radius > 0 else torch.ones_like(d)
            band = lo * torch.exp(-(d**2) / (2 * max(radius2, 1e-6) ** 2))
        else:
            band = ((d >= radius) & (d < radius2)).float()
        return band if kind == "band_pass" else 1 - band
    if soft:
        low = torch.exp(-(d**2) / (2 * radius**2)) if radius > 0 else torch.zeros_like(d)
    else:
        low = (d < radius).float()
    return low if kind == "low" else 1 - low


def frequency_filter(
    x: torch.Tensor,
    *,
    kind: str,
    radius: float,
    radius2: float | None = None,
    soft: bool = False,
    clamp: bool = True,
) -> torch.Tensor:
    """Filter every channel of ``x`` (B, C, H, W) in the 2-D Fourier domain with :func:`radial_mask`."""
    mask = radial_mask(x.shape[-2:], kind, radius, radius2, soft=soft, device=x.device)
    out = torch.fft.ifft2(torch.fft.fft2(x.float()) * mask).real.to(x.dtype)
    return out.clamp_(0.0, 1.0) if clamp else out
