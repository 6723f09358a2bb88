"""Per-image saliency maps, computed once and cached next to the decoded images.

Maps are stored as float32 (N, rows, cols) memory-mapped arrays (``images.npy``) keyed by (saliency model, head),
inside the dataset's image-cache folder, so every lambda and every evaluated model with the same
input geometry reuses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustbench_vit.data.cache import open_filled_memmap, save_filled
from robustbench_vit.models.attention import cls_attention, patch_grid
from robustbench_vit.models.loading import LoadedModel, load_model
from robustbench_vit.store import safe_name

__all__ = ["SaliencyStore"]

log = logging.getLogger(__name__)


@dataclass
class SaliencyStore:
    dir: Path
    model: LoadedModel
    head: str
    maps_mm: np.ndarray
    filled: np.ndarray

    @classmethod
    def open(cls, ctx, model_ref: str, head: str) -> SaliencyStore:  # type: ignore[no-untyped-def]
        if model_ref == ctx.model.spec.name:
            sal_model = ctx.model
        else:
            sal_model = load_model(model_ref, device=str(ctx.device), dtype=ctx.model.dtype)
        grid = patch_grid(sal_model)
        d = ctx.workdir / f"saliency-{safe_name(sal_model.spec.name)}-{safe_name(sal_model.weights)}-head{head}"
        d.mkdir(parents=True, exist_ok=True)
        shape = (len(ctx.dataset), *grid)
        maps, filled, _ = open_filled_memmap(d, shape, np.float32)
        return cls(d, sal_model, head, maps, filled)

    def ensure(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """Compute maps for every evaluated index that has none yet."""
        todo = ctx.indices[~self.filled[ctx.indices]]
        if len(todo) == 0:
            return
        head: int | str = "mean" if self.head == "mean" else int(self.head)
        log.info("computing %d saliency maps with %s", len(todo), self.model.spec.name)
        for s in range(0, len(todo), ctx.batch_size):
            ix = todo[s : s + ctx.batch_size]
            x = ctx.cache.batch(ix).to(self.model.device).float().div_(255.0)
            self.maps_mm[ix] = cls_attention(self.model, x, head=head).cpu().numpy()
            self.maps_mm.flush()
            self.filled[ix] = True
            save_filled(self.dir, self.filled)

    def maps(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.maps_mm[idx.numpy()]))
