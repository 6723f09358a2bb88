"""Decode once: resized uint8 images cached on disk per (dataset, geometry), memory-mapped.

Layout of one cache entry (``<cache_dir>/<dataset fingerprint>-<geometry key>/``):

- ``images.npy``: uint8 array (N, 3, H, W), a sparse file filled on demand;
- ``filled.npy``: bool (N,), which slots hold decoded images (written atomically per chunk);
- ``checksums.npy``: CRC-32 per slot, checked before a run uses the slot (see :mod:`.filled`);
- ``meta.json``: dataset root, kind, geometry, N.

Only the indices a run asks for are decoded (``--limit`` decodes just the subset), in parallel
worker threads; every chunk is flushed before it is marked filled, so an interrupted fill resumes
where it stopped. A file lock makes concurrent runs on one cache safe.

With a CUDA ``decode_device`` and a dataset of files, a chunk's files are read by the threads and
decoded and resized together on the GPU (:func:`~robustbench_vit.data.decode.decode_batch`). nvjpeg's
pixels differ from libjpeg-turbo's by about a uint8 level, so such a cache is its own entry (its
folder name ends in ``-nvjpeg``): every entry holds exactly what one decoder produced.
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
from robustbench_vit.data.decode import apply_geometry, decode_batch
from robustbench_vit.data.filled import FilledArray
from robustbench_vit.preprocessing import DataConfig

__all__ = ["ImageCache", "default_cache_dir"]

log = logging.getLogger(__name__)

_CHUNK = 64
_DEVICE_CHUNK = 256  # images per device decode call: a batch that keeps nvjpeg busy


def default_cache_dir() -> Path:
    """``$RBVIT_CACHE`` or ``~/.cache/rbvit/images``."""
    env = os.environ.get("RBVIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbvit" / "images"


class ImageCache:
    """The decoded, resized uint8 images of one dataset under one model geometry."""

    def __init__(
        self,
        dataset: ImageDataset,
        data_config: DataConfig,
        cache_dir: Path | None = None,
        *,
        decode_device: torch.device | str | None = None,
    ) -> None:
        self.dataset = dataset
        self.data_config = data_config
        #: where files are decoded in batches (``None``: per image on CPU threads)
        self.decode_device = None if decode_device is None else torch.device(decode_device)
        if dataset.encoded is None:
            self.decode_device = None  # not files (CIFAR batches): nothing to batch-decode
        self.decoder = "nvjpeg" if self.decode_device and self.decode_device.type == "cuda" else "cpu"
        h, w = data_config.image_size
        self.shape = (len(dataset), 3, h, w)
        key = data_config.geometry_key() + ("-nvjpeg" if self.decoder == "nvjpeg" else "")
        self.dir = Path(cache_dir or default_cache_dir()) / f"{dataset.fingerprint}-{key}"
        self.store = FilledArray(self.dir, self.shape, np.uint8)
        if self.store.created:
            meta = {
                "root": str(self.dataset.root),
                "kind": self.dataset.kind,
                "n": self.shape[0],
                "geometry": self.data_config.geometry(),
                "fingerprint": self.dataset.fingerprint,
                "decoder": self.decoder,
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
        dc, ds = self.data_config, self.dataset
        with ThreadPoolExecutor(max_workers=workers) as pool:

            def decode(ix: np.ndarray) -> np.ndarray:
                return np.stack(
                    [img.numpy() for img in pool.map(lambda j: apply_geometry(ds.read(int(j)), dc), ix)]
                )

            def decode_on_device(ix: np.ndarray) -> np.ndarray:
                datas = list(pool.map(lambda j: ds.encoded(int(j)), ix))  # type: ignore[misc]
                names = [str(ds.root / ds.items[int(j)]) for j in ix]
                return decode_batch(datas, names, dc, self.decode_device).numpy()  # type: ignore[arg-type]

            if self.decode_device is None:
                n = self.store.fill(indices, decode, chunk=_CHUNK, progress=progress)
            else:
                n = self.store.fill(indices, decode_on_device, chunk=_DEVICE_CHUNK, progress=progress)
        if n:
            where = "CPU threads" if self.decode_device is None else f"batches on {self.decode_device}"
            log.info("decoded %d images into %s (%s, %d reader threads)", n, self.dir, where, workers)
        return n

    def batch(self, indices: Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) tensor for cached indices (sorted reads are fastest), read into ``out``
        when given (a page-locked buffer)."""
        if out is None:
            return torch.from_numpy(self.store.rows(indices))
        self.store.rows(indices, out=out.numpy())
        return out
