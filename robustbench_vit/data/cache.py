"""Decode once: resized uint8 images cached on disk per (dataset, geometry), memory-mapped.

Layout of one cache entry (``<cache_dir>/<dataset fingerprint>-<geometry key>/``):

- ``images.npy``: uint8 array (N, 3, H, W), a sparse file filled on demand;
- ``filled.npy``: bool (N,), which slots hold decoded images (written atomically per chunk);
- ``checksums.npy``: CRC-32 per slot, checked before a run uses the slot (see :mod:`.filled`);
- ``meta.json``: dataset root, kind, geometry, N.

Only the indices a run asks for are decoded (``--limit`` decodes just the subset), in parallel
worker threads; every chunk is flushed before it is marked filled, so an interrupted fill resumes
where it stopped. A file lock makes concurrent runs on one cache safe.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.decode import apply_geometry
from robustbench_vit.data.filled import FilledArray
from robustbench_vit.preprocessing import DataConfig

__all__ = ["ImageCache", "default_cache_dir"]

log = logging.getLogger(__name__)

_CHUNK = 64


def default_cache_dir() -> Path:
    """``$RBVIT_CACHE`` or ``~/.cache/rbvit/images``."""
    env = os.environ.get("RBVIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbvit" / "images"


class ImageCache:
    """The decoded, resized uint8 images of one dataset under one model geometry."""

    def __init__(self, dataset: ImageDataset, data_config: DataConfig, cache_dir: Path | None = None) -> None:
        self.dataset = dataset
        self.data_config = data_config
        h, w = data_config.image_size
        self.shape = (len(dataset), 3, h, w)
        self.dir = (
            Path(cache_dir or default_cache_dir()) / f"{dataset.fingerprint}-{data_config.geometry_key()}"
        )
        self.store = FilledArray(self.dir, self.shape, np.uint8)
        if self.store.created:
            meta = {
                "root": str(self.dataset.root),
                "kind": self.dataset.kind,
                "n": self.shape[0],
                "geometry": self.data_config.geometry(),
                "fingerprint": self.dataset.fingerprint,
            }
            (self.dir / "meta.json").write_text(json.dumps(meta, indent=1))

    @property
    def images(self) -> np.ndarray:
        return self.store.array

    @property
    def filled(self) -> np.ndarray:
        return self.store.filled

    def missing(self, indices: Sequence[int]) -> np.ndarray:
        """Indices not decoded yet, or whose cached bytes fail their checksum."""
        self.store.verify(indices)
        return self.store.missing(indices)

    def ensure(
        self,
        indices: Sequence[int],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Decode every index not yet cached (or corrupted on disk); returns how many were decoded."""
        workers = workers or min(8, os.cpu_count() or 1)
        dc, read = self.data_config, self.dataset.read
        with ThreadPoolExecutor(max_workers=workers) as pool:

            def decode(ix: np.ndarray) -> np.ndarray:
                return np.stack(
                    [img.numpy() for img in pool.map(lambda j: apply_geometry(read(int(j)), dc), ix)]
                )

            n = self.store.fill(indices, decode, chunk=_CHUNK, progress=progress)
        if n:
            log.info("decoded %d images into %s with %d workers", n, self.dir, workers)
        return n

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 (B, 3, H, W) tensor for cached indices (sorted reads are fastest)."""
        return torch.from_numpy(self.store.rows(indices))
