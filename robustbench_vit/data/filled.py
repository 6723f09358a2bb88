"""A resumable, verified, memory-mapped array filled row by row: the one helper behind the decoded-image
cache, the saliency maps and the crafted adversarial images.

Layout of a folder:

- ``images.npy``: the (N, ...) array, a sparse file whose rows are filled on demand;
- ``filled.npy``: bool (N,), which rows hold data (written atomically after the rows are flushed);
- ``checksums.npy``: uint32 (N,), CRC-32 of each filled row (written with the mask);
- ``.lock``: a file lock held while rows are written, so concurrent runs never interleave.

What is never trusted: a truncated ``images.npy`` (its size is checked against its header and rows
past the end are refilled), and row contents (CRC-checked once per process before a run uses them;
bad rows are refilled). Disk space for a chunk is reserved (``posix_fallocate``) before it is written
through the memory map, so a full disk is a one-line error instead of a SIGBUS.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from robustbench_vit.errors import ResultsError

__all__ = ["FilledArray", "atomic_save"]

log = logging.getLogger(__name__)

_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def atomic_save(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file + fsync + rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise no_space_error(e, path.parent, arr.nbytes) from None


def no_space_error(e: OSError, folder: Path, needed: int) -> OSError | ResultsError:
    """ENOSPC / EFBIG / EDQUOT as a one-line error naming the folder and the space needed."""
    if e.errno in _NO_SPACE:
        return ResultsError(
            f"no space left in {folder} (needs about {max(needed, 1) / 2**20:.1f} MiB more): "
            f"{e.strerror}; free space, or write the cache (--cache-dir, RBVIT_CACHE) or the "
            "results (--out) elsewhere"
        )
    return e


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return tuple(shape), np.dtype(dtype), f.tell()


def _crc(rows: np.ndarray) -> np.ndarray:
    return np.asarray([zlib.crc32(np.ascontiguousarray(r).data) for r in rows], dtype=np.uint32)


class FilledArray:
    """``folder/images.npy`` of ``shape``/``dtype`` with its filled mask, row checksums and lock."""

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype: type | np.dtype) -> None:
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.lock = FileLock(str(self.dir / ".lock"))
        self._verified = np.zeros(self.shape[0], dtype=bool)
        with self.lock:
            self.created = self._open()

    # --- opening -------------------------------------------------------------------------------
    def _open(self) -> bool:
        path, filled_path = self.dir / "images.npy", self.dir / "filled.npy"
        if path.exists() and filled_path.exists():
            try:
                shape, dtype, offset = _header(path)
                filled = np.load(filled_path)
            except (OSError, ValueError) as e:
                log.warning("cache %s is unreadable (%s); rebuilding", self.dir, e)
            else:
                if shape == self.shape and dtype == self.dtype and filled.shape == (self.shape[0],):
                    self.offset = offset
                    self.filled = filled
                    self.checksums = self._load_checksums()
                    self._repair_truncation(path)
                    self.array = np.load(path, mmap_mode="r+")
                    return False
                log.warning("cache %s has a stale shape; rebuilding", self.dir)
        try:
            self.array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
        except OSError as e:
            raise no_space_error(e, self.dir, 0) from None
        self.offset = int(self.array.offset)
        self.filled = np.zeros(self.shape[0], dtype=bool)
        self.checksums = np.zeros(self.shape[0], dtype=np.uint32)
        self._save_mask()
        return True

    def _load_checksums(self) -> np.ndarray:
        try:
            c = np.load(self.dir / "checksums.npy")
            if c.shape == (self.shape[0],):
                return c
        except (OSError, ValueError):
            pass
        # no (valid) checksums: rows cannot be verified, so they are recomputed
        log.warning("cache %s has no row checksums; its rows will be recomputed", self.dir)
        self.filled[:] = False
        return np.zeros(self.shape[0], dtype=np.uint32)

    def _repair_truncation(self, path: Path) -> None:
        expected = self.offset + self.row_bytes * self.shape[0]
        actual = path.stat().st_size
        if actual >= expected:
            return
        intact = max(0, (actual - self.offset) // self.row_bytes) if self.row_bytes else 0
        lost = int(self.filled[intact:].sum())
        log.warning(
            "cache file %s is truncated (%d of %d bytes); %d filled rows past the end will be recomputed",
            path,
            actual,
            expected,
            lost,
        )
        self.filled[intact:] = False
        os.truncate(path, expected)  # sparse again; the lost rows are refilled on demand
        self._save_mask()

    # --- state ---------------------------------------------------------------------------------
    def _save_mask(self) -> None:
        atomic_save(self.dir / "checksums.npy", self.checksums)
        atomic_save(self.dir / "filled.npy", self.filled)

    def _reload_mask(self) -> None:
        """Rows another process filled since we opened the folder."""
        try:
            filled, sums = np.load(self.dir / "filled.npy"), np.load(self.dir / "checksums.npy")
        except (OSError, ValueError):
            return
        if filled.shape == self.filled.shape and sums.shape == self.checksums.shape:
            self.filled, self.checksums = filled, sums

    def missing(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        return idx[~self.filled[idx]]

    def verify(self, indices: Sequence[int], chunk: int = 256) -> int:
        """CRC-check filled rows among ``indices`` not yet checked by this process; bad rows become unfilled."""
        idx = np.asarray(indices, dtype=np.int64)
        idx = idx[self.filled[idx] & ~self._verified[idx]]
        bad: list[np.ndarray] = []
        for s in range(0, len(idx), chunk):
            ix = np.sort(idx[s : s + chunk])
            ok = _crc(self.array[ix]) == self.checksums[ix]
            bad.append(ix[~ok])
            self._verified[ix[ok]] = True
            self.release(ix)
        wrong = np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)
        if len(wrong):
            log.warning(
                "cache %s: %d rows fail their checksum (corrupted on disk); recomputing them",
                self.dir,
                len(wrong),
            )
            with self.lock:
                self.filled[wrong] = False
                self._save_mask()
        return len(wrong)

    def rows(self, ix: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
        """A copy of rows ``ix`` (sorted indices read fastest), into ``out`` when given (a page-locked
        buffer, say); their pages leave this process's memory. Every row must be filled: an unfilled
        row reads as zeros, which would pass for a black image."""
        ix = np.asarray(ix, dtype=np.int64)
        if len(ix) and (ix.min() < 0 or ix.max() >= len(self.array)):
            raise IndexError(f"rows {ix.min()}..{ix.max()} outside 0..{len(self.array) - 1}")
        if not self.filled[ix].all():
            self._reload_mask()  # filled by another process since we looked
            todo = self.missing(ix)
            if len(todo):
                raise LookupError(
                    f"{self.dir}: {len(todo)} requested rows (first {int(todo[0])}) are not computed yet; "
                    "fill them first (ImageCache.ensure)"
                )
        if out is None:
            out = np.ascontiguousarray(self.array[ix])
        else:
            np.take(self.array, ix, axis=0, out=out, mode="clip")  # "raise" would copy through a buffer
        self.release(ix)
        return out

    def release(self, ix: np.ndarray) -> None:
        """Drop the mapped pages of rows ``ix`` from this process (``madvise(MADV_DONTNEED)``): the data
        stays in the file and the page cache, but a pass over 50k images never holds them all resident,
        so peak RSS is bounded by a batch, not by the cache size. Only after the rows are written back."""
        mm = getattr(self.array, "_mmap", None)
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if mm is None or advice is None or len(ix) == 0:
            return
        page = mmap.PAGESIZE
        base = self.offset - self.offset % mmap.ALLOCATIONGRANULARITY  # file offset of the map's first byte
        start = self.offset - base + int(np.min(ix)) * self.row_bytes
        end = min(self.offset - base + (int(np.max(ix)) + 1) * self.row_bytes, len(mm))
        # whole pages inside the rows' span; the partial pages at its ends are left mapped
        lo, hi = -(-start // page) * page, (end // page) * page
        if hi > lo:
            try:
                mm.madvise(advice, lo, hi - lo)
            except (OSError, ValueError):  # pragma: no cover - advisory only
                pass

    def _reserve(self, ix: np.ndarray) -> None:
        """Allocate the disk blocks of rows ``ix`` before writing them through the memory map."""
        if not hasattr(os, "posix_fallocate"):
            return
        fd = os.open(self.dir / "images.npy", os.O_RDWR)
        try:
            for i in ix:
                os.posix_fallocate(fd, self.offset + int(i) * self.row_bytes, self.row_bytes)
        except OSError as e:
            raise no_space_error(e, self.dir, len(ix) * self.row_bytes) from None
        finally:
            os.close(fd)

    def fill(
        self,
        indices: Sequence[int],
        compute: Callable[[np.ndarray], np.ndarray],
        *,
        chunk: int,
        progress: Callable[[int], None] | None = None,
        exclusive: bool = True,
    ) -> int:
        """Compute and store every row of ``indices`` that is missing or fails its checksum.

        ``compute(ix)`` returns the rows for the sorted index array ``ix``. Rows are flushed before they
        are marked filled, so a killed fill resumes where it stopped. Returns how many rows were computed.
        ``exclusive`` holds the folder's lock while computing, so a concurrent fill of the same rows
        waits and then finds them done (the image cache); ``False`` computes outside the lock and only
        stores under it, so processes filling disjoint rows (AutoAttack's shards) run in parallel.
        """
        if exclusive:
            with self.lock:
                todo = self._todo(indices)
                for s in range(0, len(todo), chunk):
                    ix = todo[s : s + chunk]
                    self._reserve(ix)
                    self._store(ix, np.asarray(compute(ix), dtype=self.dtype))
                    if progress:
                        progress(len(ix))
                return len(todo)
        with self.lock:
            todo = self._todo(indices)
        for s in range(0, len(todo), chunk):
            ix = todo[s : s + chunk]
            rows = np.asarray(compute(ix), dtype=self.dtype)
            with self.lock:
                self._reload_mask()  # keep the rows other processes stored meanwhile
                self._reserve(ix)
                self._store(ix, rows)
            if progress:
                progress(len(ix))
        return len(todo)

    def _todo(self, indices: Sequence[int]) -> np.ndarray:
        self._reload_mask()
        self.verify(indices)
        return np.sort(self.missing(indices))

    def _store(self, ix: np.ndarray, rows: np.ndarray) -> None:
        """Write rows ``ix``, flush them, then mark them filled (atomically); under the lock."""
        self.array[ix] = rows
        self.array.flush()
        self.release(ix)
        self.checksums[ix] = _crc(rows)
        self.filled[ix] = True
        self._verified[ix] = True
        self._save_mask()
