"""Decode once: resized uint8 images cached on disk per (dataset, geometry), memory-mapped.

Layout of one cache entry (``<cache_dir>/<dataset fingerprint>-<geometry key>/``):

- ``images.npy``: uint8 array (N, 3, H, W), a sparse file filled on demand;
- ``filled.npy``: bool (N,), which slots hold decoded images (written atomically per chunk);
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
from filelock import FileLock

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.decode import apply_geometry
from robustbench_vit.preprocessing import DataConfig

__all__ = ["ImageCache", "default_cache_dir", "open_filled_memmap", "save_filled"]

log = logging.getLogger(__name__)

_CHUNK = 64


def default_cache_dir() -> Path:
    """``$RBVIT_CACHE`` or ``~/.cache/rbvit/images``."""
    env = os.environ.get("RBVIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbvit" / "images"


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_filled_memmap(folder: Path, shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, np.ndarray, bool]:
    """``folder/images.npy`` as a writable memory map of ``shape`` plus its ``filled.npy`` row mask.

    Created empty (sparse file, nothing filled) when absent or when the stored shape differs.
    Returns ``(array, filled, created)``; persist the mask with :func:`save_filled` after flushing rows.
    """
    img_path, filled_path = folder / "images.npy", folder / "filled.npy"
    if img_path.exists() and filled_path.exists():
        arr, filled = np.load(img_path, mmap_mode="r+"), np.load(filled_path)
        if arr.shape == tuple(shape) and filled.shape == (shape[0],):
            return arr, filled, False
        log.warning("cache %s has a stale shape; rebuilding", folder)
    arr = np.lib.format.open_memmap(img_path, mode="w+", dtype=dtype, shape=tuple(shape))
    filled = np.zeros(shape[0], dtype=bool)
    save_filled(folder, filled)
    return arr, filled, True


def save_filled(folder: Path, filled: np.ndarray) -> None:
    """Atomically persist the filled-row mask (call after the rows themselves were flushed)."""
    _atomic_save(folder / "filled.npy", filled)


class ImageCache:
    """The decoded, resized uint8 images of one dataset under one model geometry."""

    def __init__(self, dataset: ImageDataset, data_config: DataConfig, cache_dir: Path | None = None) -> None:
        self.dataset = dataset
        self.data_config = data_config
        h, w = data_config.image_size
        self.shape = (len(dataset), 3, h, w)
        self.dir = Path(cache_dir or default_cache_dir()) / f"{dataset.fingerprint}-{data_config.geometry_key()}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))
        with self._lock:
            self._open()

    def _open(self) -> None:
        self.images, self.filled, created = open_filled_memmap(self.dir, self.shape, np.uint8)
        if created:
            meta = {"root": str(self.dataset.root), "kind": self.dataset.kind, "n": self.shape[0],
                    "geometry": self.data_config.geometry(), "fingerprint": self.dataset.fingerprint}  # fmt: skip
            (self.dir / "meta.json").write_text(json.dumps(meta, indent=1))

    def missing(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        return idx[~self.filled[idx]]

    def ensure(self, indices: Sequence[int], *, workers: int | None = None,
               progress: Callable[[int], None] | None = None) -> int:  # fmt: skip
        """Decode every index not yet cached; returns how many were decoded."""
        with self._lock:
            self.filled = np.load(self.dir / "filled.npy")  # another process may have filled some
            todo = self.missing(indices)
            if len(todo) == 0:
                return 0
            workers = workers or min(8, os.cpu_count() or 1)
            dc, read = self.data_config, self.dataset.read
            log.info("decoding %d images into %s with %d workers", len(todo), self.dir, workers)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for start in range(0, len(todo), _CHUNK):
                    chunk = todo[start : start + _CHUNK]
                    for i, img in zip(chunk, pool.map(lambda j: apply_geometry(read(int(j)), dc), chunk)):
                        self.images[i] = img.numpy()
                    self.images.flush()
                    self.filled[chunk] = True
                    save_filled(self.dir, self.filled)
                    if progress:
                        progress(len(chunk))
            return len(todo)

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 (B, 3, H, W) tensor for cached indices (sorted reads are fastest)."""
        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.images[idx]))
