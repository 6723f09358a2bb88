"""Storage of crafted adversarial examples that keeps them where the attack left them.

An attack's last iterate is float32; a reference evaluation (ATViT's ``test.py``) feeds exactly that
to the target. Rounding it to uint8 moves a pixel by up to 0.5/255, enough to move predictions near
the boundary, and float16 moves values near 1 by up to 0.125/255. rbvit stores the rounded uint8
image *and* the float16 residual ``x * 255 - round(x * 255)`` (|residual| <= ~1 level, so its float16
error is <= 2**-12 of a level): three bytes per value, and the stored example equals the iterate to
about 1e-6 in [0, 1]. ``benchmarks/bench_transfer_storage.py`` measures the three formats.

Both parts live in one uint8 row per image, ``(3, C, H, W)``: plane 0 the rounded image, planes 1-2
the residual's little-endian float16 bytes, so one checksum and one fill cover both.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["STORAGE", "encode_adversarial", "decode_adversarial", "stored_shape"]

#: recorded in the attack configuration (and so in the cache key and the rows)
STORAGE = "uint8+float16-residual"
_F16 = np.dtype("<f2")


def stored_shape(image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the stored array for images of shape ``(N, C, H, W)``."""
    n, *rest = image_shape
    return (n, 3, *rest)


def encode_adversarial(adv: torch.Tensor) -> np.ndarray:
    """Rows ``(B, 3, C, H, W)`` uint8 for adversarials ``adv`` (B, C, H, W) in [0, 1], stored as they are
    (the attack has projected them to its ball already)."""
    scaled = adv.detach().float().clamp(0, 1) * 255
    rounded = scaled.round()
    residual = (scaled - rounded).cpu().numpy().astype(_F16)
    planes = residual.view(np.uint8).reshape(*residual.shape, 2)  # (B, C, H, W, 2) bytes
    out = np.empty((adv.shape[0], 3, *adv.shape[1:]), dtype=np.uint8)
    out[:, 0] = rounded.to(torch.uint8).cpu().numpy()
    out[:, 1:] = np.moveaxis(planes, -1, 1)
    return out


def decode_adversarial(rows: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """The float32 adversarials in [0, 1] of stored rows ``(B, 3, C, H, W)``."""
    rows = np.ascontiguousarray(rows)
    residual = np.ascontiguousarray(np.moveaxis(rows[:, 1:], 1, -1)).view(_F16)[..., 0]
    scaled = torch.from_numpy(rows[:, 0]).to(device).float() + torch.from_numpy(residual).to(device).float()
    return (scaled / 255).clamp(0, 1)
