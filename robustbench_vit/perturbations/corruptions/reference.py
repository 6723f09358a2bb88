"""The ``imagecorruptions`` reference backend: image by image on the CPU, seeded (slow, authoritative)."""

from __future__ import annotations

import numpy as np
import torch

from robustbench_vit.perturbations.corruptions.tables import check_corruption

#: reference functions that ignore numpy's global seed and take their own ``seed=`` argument
_OWN_SEED = ("impulse_noise", "glass_blur")


def reference_corrupt(x: torch.Tensor, name: str, severity: int, *, seed: int) -> torch.Tensor:
    """Corrupt (B, 3, H, W) in [0, 1] with ``imagecorruptions`` (ImageNet tables); image ``i`` uses
    numpy seed ``seed + i``, so the torch backend's ``*_with`` functions can be fed the same draws."""
    from imagecorruptions import corrupt as ic_corrupt

    check_corruption(name)
    u8 = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(u8)
    state = np.random.get_state()
    try:
        for i, img in enumerate(u8):
            image_seed = (seed + i) % 2**32
            np.random.seed(image_seed)  # most reference functions draw from numpy's global RNG ...
            # ... but impulse_noise and glass_blur draw from their own generator unless given a seed
            kwargs = {"seed": image_seed} if name in _OWN_SEED else {}
            res = np.asarray(ic_corrupt(img, corruption_name=name, severity=severity, **kwargs))
            out[i] = np.uint8(res[: img.shape[0], : img.shape[1]])
    finally:
        np.random.set_state(state)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device).float() / 255
