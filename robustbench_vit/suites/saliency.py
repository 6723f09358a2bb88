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

from robustbench_vit.data.filled import FilledArray
from robustbench_vit.identity import derived_key, loaded_model_identity
from robustbench_vit.models.attention import cls_attention, patch_grid
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.storage.store import safe_name
from robustbench_vit.suites.seeding import model_rng

__all__ = ["SaliencyStore"]

log = logging.getLogger(__name__)


@dataclass
class SaliencyStore:
    dir: Path
    model: LoadedModel
    head: str
    store: FilledArray

    @classmethod
    def open(cls, ctx, sal_model: LoadedModel, head: str, version: int | dict) -> SaliencyStore:  # type: ignore[no-untyped-def]
        """The maps of ``sal_model``'s class-token attention (``head``) for the run's images; ``version`` is
        the calling suite's code key (``Suite.code_key``), so a fix of how maps are computed (its version
        bumped, or the code replaced or edited) computes them again."""
        grid = patch_grid(sal_model)
        # the maps are a function of the saliency model's content and of the images' content
        key = derived_key(
            model=loaded_model_identity(sal_model), head=head, images=ctx.identity, suite_version=version
        )
        d = ctx.workdir / f"saliency-{safe_name(sal_model.spec.name)}-head{head}-{key}"
        d.mkdir(parents=True, exist_ok=True)
        shape = (len(ctx.dataset), *grid)
        return cls(d, sal_model, head, FilledArray(d, shape, np.float32))

    def ensure(self, ctx) -> None:  # type: ignore[no-untyped-def]
        """Compute maps for every evaluated index that has none yet (under the folder's file lock)."""
        head: int | str = "mean" if self.head == "mean" else int(self.head)

        def compute(ix: np.ndarray) -> np.ndarray:
            x = ctx.cache.batch(ix).to(self.model.device).float().div_(255.0)
            with model_rng(ctx.seed, int(ix[0]), self.model.device):  # a randomized model's own draws
                return cls_attention(self.model, x, head=head).cpu().numpy()

        n = self.store.fill(ctx.indices, compute, chunk=ctx.batch_size)
        if n:
            log.info("computed %d saliency maps with %s", n, self.model.spec.name)

    def maps(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.store.rows(idx.numpy()))
