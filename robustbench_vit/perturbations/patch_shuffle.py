"""Patch shuffling (Naseer et al. 2021, Sec. 3.3): permute an image's grid of patches.

One permutation per batch (the paper's reference code) or one per image; grid 1 is the identity.
A grid that does not divide the input raises, unless ``crop=True``, which shuffles the largest
divisible top-left region and leaves the remaining border untouched.
"""

from __future__ import annotations

import torch

from robustbench_vit.device import to_device
from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.grid import as_grid, cell_size

__all__ = ["patch_shuffle"]


def patch_shuffle(
    x: torch.Tensor,
    *,
    grid: int | tuple[int, int],
    mask_mode: str = "batch",
    crop: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Shuffle the (rows x cols) patches of each image.

    Args:
        x: (B, C, H, W).
        grid: patches per side (int) or (rows, cols); 1 is the identity.
        mask_mode: ``batch`` (one permutation for the batch, paper) or ``image``.
        crop: shuffle only the largest divisible region instead of rejecting a non-dividing grid.
        generator: CPU generator for the permutation(s).

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> patch_shuffle(x, grid=1).equal(x)
        True
    """
    if mask_mode not in ("batch", "image"):
        raise ConfigError(f"mask_mode {mask_mode!r} not in ('batch', 'image')")
    gh, gw = as_grid(grid)
    b, c, h, w = x.shape
    if gh * gw == 1:
        return x
    if crop:
        hh, ww = h - h % gh, w - w % gw
        if hh == 0 or ww == 0:
            raise ConfigError(f"grid {gh}x{gw} is larger than the {h}x{w} input")
        out = x.clone()
        out[:, :, :hh, :ww] = patch_shuffle(
            x[:, :, :hh, :ww], grid=(gh, gw), mask_mode=mask_mode, generator=generator
        )
        return out
    ph, pw = cell_size(h, w, (gh, gw))
    n = gh * gw
    patches = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, n, c, ph, pw)
    rows = 1 if mask_mode == "batch" else b
    perm = to_device(torch.rand(rows, n, generator=generator).argsort(dim=1), x.device).expand(b, n)
    shuffled = torch.gather(patches, 1, perm.view(b, n, 1, 1, 1).expand_as(patches))
    return shuffled.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
