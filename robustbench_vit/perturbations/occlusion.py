"""Patch drop (occlusion), after Naseer et al. 2021, "Intriguing Properties of Vision Transformers".

Random PatchDrop zeroes ``k = floor(fraction * cells)`` cells of a grid (default 14x14 = 16 px
at 224), in [0, 1] pixel space before normalisation, with one mask for the whole batch (the
paper's protocol) or one per image. The offset variant shifts the cell mask by half a cell down
and right, leaving the top/left half-cell border visible, as the paper's reference code does.
Salient / non-salient drop removes or keeps the smallest set of cells holding a fraction of a
saliency map's mass (e.g. DINO's CLS attention).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

from robustbench_vit.device import to_device
from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.grid import as_grid, cell_size

__all__ = [
    "drop_count",
    "random_cell_mask",
    "drop_cells",
    "random_patch_drop",
    "mass_mask",
    "saliency_patch_drop",
    "FILLS",
    "MASK_MODES",
]

Fill = Literal["zero", "mean", "noise"]
MaskMode = Literal["batch", "image"]
FILLS: tuple[str, ...] = get_args(Fill)
MASK_MODES: tuple[str, ...] = get_args(MaskMode)


def drop_count(fraction: float, cells: int) -> int:
    """Number of cells dropped: ``floor(fraction * cells)`` (0, 19, 39, ..., 176 for 196 cells)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"drop fraction must be in [0, 1], got {fraction}")
    return math.floor(fraction * cells + 1e-9)


def random_cell_mask(
    batch: int,
    grid: tuple[int, int],
    k: int,
    *,
    mask_mode: str = "batch",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool (B, gh, gw) mask with exactly ``k`` True (dropped) cells per image, drawn on the CPU."""
    if mask_mode not in MASK_MODES:
        raise ConfigError(f"mask_mode {mask_mode!r} not in {MASK_MODES}")
    n = grid[0] * grid[1]
    rows = 1 if mask_mode == "batch" else batch
    order = torch.rand(rows, n, generator=generator).argsort(dim=1)
    mask = torch.zeros(rows, n, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.view(rows, *grid).expand(batch, *grid)


def _fill_values(x: torch.Tensor, fill: str, generator: torch.Generator | None) -> torch.Tensor:
    if fill == "zero":
        return torch.zeros((), device=x.device, dtype=x.dtype)
    if fill == "mean":  # per-image, per-channel mean colour
        return x.mean(dim=(2, 3), keepdim=True)
    if fill == "noise":  # uniform noise in [0, 1], drawn with a device generator seeded from `generator`
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        dev_gen = torch.Generator(device=x.device).manual_seed(seed)
        return torch.rand(x.shape, generator=dev_gen, device=x.device, dtype=x.dtype)
    raise ConfigError(f"fill {fill!r} not in {FILLS}")


def drop_cells(
    x: torch.Tensor,
    cell_mask: torch.Tensor,
    *,
    fill: str = "zero",
    offset: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace the pixels of True cells of a (B, gh, gw) mask by ``fill``.

    ``offset`` shifts the pixel mask by half a cell down and right (cells at the bottom/right
    edge are cut, the top/left half-cell border stays visible).
    """
    b, _, h, w = x.shape
    ch, cw = cell_size(h, w, (cell_mask.shape[1], cell_mask.shape[2]))
    pix = to_device(cell_mask, x.device).repeat_interleave(ch, 1).repeat_interleave(cw, 2)  # (B, H, W)
    if offset:
        oh, ow = ch // 2, cw // 2
        shifted = torch.zeros_like(pix)
        shifted[:, oh:, ow:] = pix[:, : h - oh, : w - ow]
        pix = shifted
    return torch.where(pix.unsqueeze(1), _fill_values(x, fill, generator), x)


def random_patch_drop(
    x: torch.Tensor,
    *,
    fraction: float,
    grid: int | tuple[int, int] = 14,
    fill: str = "zero",
    mask_mode: str = "batch",
    offset: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random PatchDrop (Naseer et al. 2021, Sec. 3.1).

    Args:
        x: (B, 3, H, W) RGB in [0, 1].
        fraction: share of cells to drop; ``k = floor(fraction * cells)``.
        grid: cells per side (int) or (rows, cols); must divide H and W. ``grid = H`` is pixel drop.
        fill: ``zero`` (paper), ``mean`` (image mean colour) or ``noise`` (uniform).
        mask_mode: ``batch`` (one mask per batch, paper) or ``image``.
        offset: shift the mask by half a cell (the paper's offset grid).
        generator: CPU generator for the mask (and the noise seed).

    Example:
        >>> x = torch.rand(2, 3, 224, 224)
        >>> y = random_patch_drop(x, fraction=0.5, generator=torch.Generator().manual_seed(0))
        >>> int((y == 0).all(1)[0].float().sum().item()) // 256
        98
    """
    g = as_grid(grid)
    cell_size(x.shape[2], x.shape[3], g)
    k = drop_count(fraction, g[0] * g[1])
    if k == 0:
        return x
    mask = random_cell_mask(x.shape[0], g, k, mask_mode=mask_mode, generator=generator)
    return drop_cells(x, mask, fill=fill, offset=offset, generator=generator)


def mass_mask(saliency: torch.Tensor, mass: float) -> torch.Tensor:
    """Bool mask (same shape) of the smallest set of top cells holding ``mass`` of each map's total.

    ``saliency`` is (B, gh, gw), non-negative. Follows the DINO / IPViT thresholding in float32: sort cells
    by saliency, normalise, and keep the cells whose ascending cumulative mass exceeds ``1 - mass``. A
    cumulative mass within a millionth of that threshold (a float sum landing a few ulps above an exact
    ``1 - mass``) does not exceed it; the tolerance is relative, so ``mass=1`` keeps every cell with any
    saliency, as the reference does (an absolute one left out the cells of a peaked map's faintest 1e-7).
    """
    if not 0.0 <= mass <= 1.0:
        raise ConfigError(f"attention mass lambda must be in [0, 1], got {mass}")
    b = saliency.shape[0]
    flat = saliency.reshape(b, -1).float()
    val, idx = flat.sort(dim=1)
    val = val / val.sum(dim=1, keepdim=True).clamp_min(1e-12)
    keep_sorted = val.cumsum(dim=1) > (1.0 - mass) * (1 + 1e-6)  # strict, as in IPViT
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(1, idx, keep_sorted)
    return keep.view_as(saliency)


def saliency_patch_drop(
    x: torch.Tensor,
    saliency: torch.Tensor,
    *,
    mass: float,
    salient: bool,
    fill: str = "zero",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Salient (foreground) or non-salient (background) PatchDrop (Naseer et al. 2021, Sec. 3.1).

    ``salient=True`` drops the top cells holding ``mass`` of the saliency; ``salient=False``
    keeps only them and drops the rest.
    """
    # ranked and summed on the CPU (a few hundred values per image), like the random masks: the same
    # maps select the same cells on every device, whatever order a GPU's sum and scan add in
    top = to_device(mass_mask(saliency.cpu(), mass), x.device)
    return drop_cells(x, top if salient else ~top, fill=fill, generator=generator)
