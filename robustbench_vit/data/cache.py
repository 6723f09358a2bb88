"""Decode once: resized uint8 images cached on disk per (dataset, geometry), memory-mapped.

Layout of one cache entry (``<cache_dir>/<dataset fingerprint>-<geometry key>-<library versions key>/``):

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

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.decode import apply_geometry, decode_batch, decode_rgb
from robustbench_vit.data.digests import DigestIndex, default_cache_dir, hash_file, sha256_bytes
from robustbench_vit.data.filled import FilledArray
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import DataError, ResultsError
from robustbench_vit.identity import digest
from robustbench_vit.replaced_code import running_software

__all__ = ["ImageCache", "default_cache_dir", "content_identity", "current_identity", "item_digests"]

log = logging.getLogger(__name__)

_CHUNK = 64
_DEVICE_CHUNK = 256  # images per device decode call: a batch that keeps nvjpeg busy


class ImageCache:
    """The decoded, resized uint8 images of one dataset under one model geometry.

    Every slot carries the SHA-256 of the file (or pixels) it was decoded from. A slot counts as cached
    only while that digest equals the item's current content: file digests are remembered per stat tuple
    (:class:`~robustbench_vit.data.digests.DigestIndex`), so a warm run reads no file, a file changed in
    place (same name, same size) is decoded again, and a file only touched keeps its slot after one hash.
    Files are hashed while they are decoded: a cold run reads every byte once.
    """

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
        # the libraries that decode and resize are part of what a slot holds (a kernel change moves a level)
        stack = digest(running_software())[:8]
        key = f"{data_config.geometry_key()}-{stack}" + ("-nvjpeg" if self.decoder == "nvjpeg" else "")
        self.root = Path(cache_dir or default_cache_dir())
        self.dir = self.root / f"{dataset.fingerprint}-{key}"
        try:
            self.store = FilledArray(self.dir, self.shape, np.uint8, tagged=True)
        except OSError as e:
            if isinstance(e, ResultsError):
                raise
            raise ResultsError(
                f"cannot write the image cache {self.root}: {e.strerror or e} (pass --cache-dir DIR or set "
                "RBVIT_CACHE to a writable folder)"
            ) from None
        self.index = (
            DigestIndex(self.root / "identity", dataset.fingerprint) if dataset.file is not None else None
        )
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

    # --- content ---------------------------------------------------------------------------------
    def _read_file(self, j: int) -> tuple[np.ndarray, bytes]:
        return read_item(self.dataset, self.index, j)

    def expected(
        self, indices: Sequence[int], workers: int | None = None, *, hash_all: bool = False
    ) -> np.ndarray:
        """The current content digest of every index ((n, 32) uint8). Files whose stat tuple is unchanged
        are not read; a changed file whose slot is filled is hashed now (if its content is what the slot
        was decoded from, the slot stays); a changed file with no slot gets zeros (it is hashed while it is
        decoded), unless ``hash_all``."""
        idx = np.asarray(indices, dtype=np.int64)
        return item_digests(
            self.dataset, self.index, idx, None if hash_all else self.store.filled[idx], workers
        )

    def missing(self, indices: Sequence[int]) -> np.ndarray:
        """Indices not decoded yet, decoded from other content, or whose cached bytes fail their checksum."""
        self.store.verify(indices)
        return self.store.missing(indices, self.expected(indices))

    def ensure(
        self,
        indices: Sequence[int],
        *,
        workers: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Decode every index not cached for its current content (or corrupted on disk); returns how many
        were decoded."""
        workers = workers or min(8, os.cpu_count() or 1)
        dc, ds = self.data_config, self.dataset
        expected = self.expected(indices, workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:

            def one(j: int) -> tuple[np.ndarray, torch.Tensor]:
                if self.index is None:
                    digest, img = pixel_digest(ds, j)
                    return digest, apply_geometry(img, dc)
                digest, data = self._read_file(j)
                return digest, apply_geometry(decode_rgb(_as_tensor(data), ds.file(j)), dc)  # type: ignore[misc]

            def decode(ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                done = list(pool.map(lambda j: one(int(j)), ix))
                return np.stack([img.numpy() for _, img in done]), np.stack([d for d, _ in done])

            def decode_on_device(ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                read = list(pool.map(lambda j: self._read_file(int(j)), ix))
                names = [str(ds.file(int(j))) for j in ix]  # type: ignore[misc]
                rows = decode_batch([_as_tensor(d) for _, d in read], names, dc, self.decode_device)  # type: ignore[arg-type]
                return rows.numpy(), np.stack([d for d, _ in read])

            fn, chunk = (decode, _CHUNK) if self.decode_device is None else (decode_on_device, _DEVICE_CHUNK)
            n = self.store.fill(indices, fn, chunk=chunk, progress=progress, tags=expected)
        if self.index is not None:
            self.index.save()
        if n:
            where = "CPU threads" if self.decode_device is None else f"batches on {self.decode_device}"
            log.info("decoded %d images into %s (%s, %d reader threads)", n, self.dir, where, workers)
        return n

    def identity(self, indices: Sequence[int]) -> str:
        """The content identity of the images at ``indices`` as cached (after :meth:`ensure`): SHA-256 over
        each item's id, the digest of the content its slot was decoded from, and its dataset class."""
        idx = np.asarray(indices, dtype=np.int64)
        if not self.store.filled[idx].all():
            raise LookupError(f"{self.dir}: identity of rows that are not decoded yet (call ensure first)")
        return content_identity(self.dataset, idx, self.store.tags_of(idx))

    def current_identity(self, indices: Sequence[int]) -> str:
        """The content identity of the items at ``indices`` as they are now, without decoding them."""
        return current_identity(self.dataset, indices, self.root)

    def batch(self, indices: Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) tensor for cached indices (sorted reads are fastest), read into ``out``
        when given (a page-locked buffer)."""
        if out is None:
            return torch.from_numpy(self.store.rows(indices))
        self.store.rows(indices, out=out.numpy())
        return out


def read_item(ds: ImageDataset, index: DigestIndex | None, j: int) -> tuple[np.ndarray, bytes]:
    """One file item's digest and bytes (remembered in ``index`` unless the file is racy)."""
    path = ds.file(j)  # type: ignore[misc]
    try:
        digest, stat, data = hash_file(path)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror or e}") from None
    if index is not None:
        index.record(ds.items[j], stat, digest)
    return digest, data


def pixel_digest(ds: ImageDataset, j: int) -> tuple[np.ndarray, torch.Tensor]:
    """An in-memory item's digest (of its uint8 pixels) and pixels."""
    img = ds.read(j)
    return sha256_bytes(img.contiguous().numpy().tobytes()), img


def item_digests(
    ds: ImageDataset,
    index: DigestIndex | None,
    idx: np.ndarray,
    hash_only: np.ndarray | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Current content digests of items ``idx`` ((n, 32) uint8): remembered ones for files whose stat
    tuple is unchanged; the others are hashed now where ``hash_only`` is true (``None``: all of them) and
    left as zeros elsewhere. In-memory items are always hashed (their pixels)."""
    if ds.file is None or index is None:
        return (
            np.stack([pixel_digest(ds, int(j))[0] for j in idx]) if len(idx) else np.zeros((0, 32), np.uint8)
        )
    digests, known = index.lookup([ds.items[j] for j in idx], ds.stats[idx])  # type: ignore[index]
    check = np.flatnonzero(~known if hash_only is None else ~known & hash_only)
    if len(check):
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            for k, (digest, _) in zip(check, pool.map(lambda k: read_item(ds, index, int(idx[k])), check)):
                digests[k] = digest
        index.save()
    return digests


def current_identity(ds: ImageDataset, indices: Sequence[int], cache_root: Path | None = None) -> str:
    """The content identity of items ``indices`` as they are now (changed files hashed, none decoded)."""
    idx = np.asarray(indices, dtype=np.int64)
    root = Path(cache_root or default_cache_dir())
    index = DigestIndex(root / "identity", ds.fingerprint) if ds.file is not None else None
    return content_identity(ds, idx, item_digests(ds, index, idx))


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def content_identity(ds: ImageDataset, indices: np.ndarray, digests: np.ndarray) -> str:
    """SHA-256 over (item id, content digest, dataset class name) of each index, in order."""
    h = hashlib.sha256(f"{ds.kind}\0{len(indices)}\n".encode())
    h.update(np.ascontiguousarray(digests, dtype=np.uint8).tobytes())
    h.update("\n".join(f"{ds.items[j]}\0{ds.class_of(j)}" for j in indices.tolist()).encode())
    return h.hexdigest()
