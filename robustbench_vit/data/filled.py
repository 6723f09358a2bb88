"""A resumable, verified, memory-mapped array filled row by row: the one helper behind the decoded-image
cache, the saliency maps and the crafted adversarial images.

Layout of a folder:

- ``images.npy``: the (N, ...) array, a sparse file whose rows are filled on demand;
- ``filled.npy``: bool (N,), which rows hold data (written atomically after the rows are flushed);
- ``checksums.npy``: uint32 (N,), CRC-32 of each filled row (written with the mask);
- ``sources.npy`` (tagged arrays): uint8 (N, 32), the content digest of what each row was computed
  from (an image file's SHA-256): a row whose tag differs from its input's current digest is recomputed;
- ``.lock``: a file lock held while rows are written, so concurrent runs never interleave.

What is never trusted: a truncated ``images.npy`` (its size is checked against its header and rows
past the end are refilled), row contents (CRC-checked once per process before a run uses them;
bad rows are refilled), and the bookkeeping files themselves: a damaged header or mask, checksum or
tag file (a flipped bit, a truncated write) makes the folder rebuild or its rows recompute, never an
error. Disk space for a chunk is reserved (``posix_fallocate``) before it is written
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

from robustbench_vit.data.tempfiles import remove_orphaned_temp_files, temp_path
from robustbench_vit.errors import ResultsError

__all__ = ["FilledArray", "atomic_save"]

log = logging.getLogger(__name__)

_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def atomic_save(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file + fsync + rename."""
    tmp = temp_path(path)
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


def _load_array(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """A small bookkeeping array, or ``None`` when it is missing or damaged (any parse error, a shape or
    dtype other than expected)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - a flipped header byte raises TokenError, SyntaxError, ValueError ...
        return None
    if arr.shape != shape or arr.dtype != dtype:
        return None
    if dtype == np.bool_:
        arr = arr.view(np.uint8) != 0  # a flipped bit in a flag byte reads as a plain True, not as 0x02
    return arr


def _crc(rows: np.ndarray) -> np.ndarray:
    return np.asarray([zlib.crc32(np.ascontiguousarray(r).data) for r in rows], dtype=np.uint32)


class FilledArray:
    """``folder/images.npy`` of ``shape``/``dtype`` with its filled mask, row checksums and lock."""

    def __init__(
        self, folder: Path, shape: tuple[int, ...], dtype: type | np.dtype, *, tagged: bool = False
    ) -> None:
        self.dir = Path(folder)
        self.tagged = tagged
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.lock = FileLock(str(self.dir / ".lock"))
        remove_orphaned_temp_files(self.dir)  # left by a run killed while it saved the mask
        self._verified = np.zeros(self.shape[0], dtype=bool)
        with self.lock:
            self.created = self._open()

    # --- opening -------------------------------------------------------------------------------
    def _open(self) -> bool:
        path, filled_path = self.dir / "images.npy", self.dir / "filled.npy"
        if path.exists() and filled_path.exists():
            try:
                shape, dtype, offset = _header(path)
            except Exception as e:  # noqa: BLE001 - a damaged header: rebuild, never fail every later run
                log.warning("cache %s is unreadable (%s); rebuilding", self.dir, e)
            else:
                filled = _load_array(filled_path, (self.shape[0],), np.dtype(bool))
                if shape == self.shape and dtype == self.dtype and filled is not None:
                    self.offset = offset
                    self.filled = filled
                    self.checksums = self._load_checksums()
                    self.tags = self._load_tags()
                    self._repair_truncation(path)
                    self.array = np.load(path, mmap_mode="r+")
                    return False
                log.warning("cache %s has a stale shape or a damaged mask; rebuilding", self.dir)
        try:
            self.array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
        except OSError as e:
            raise no_space_error(e, self.dir, 0) from None
        self.offset = int(self.array.offset)
        self.filled = np.zeros(self.shape[0], dtype=bool)
        self.checksums = np.zeros(self.shape[0], dtype=np.uint32)
        self.tags = np.zeros(self._tag_shape, dtype=np.uint8)
        self._save_mask()
        return True

    @property
    def _tag_shape(self) -> tuple[int, int]:
        return (self.shape[0], 32 if self.tagged else 0)

    def _load_checksums(self) -> np.ndarray:
        c = _load_array(self.dir / "checksums.npy", (self.shape[0],), np.dtype(np.uint32))
        if c is not None:
            return c
        # no (valid) checksums: rows cannot be verified, so they are recomputed
        log.warning("cache %s has no valid row checksums; its rows will be recomputed", self.dir)
        self.filled[:] = False
        return np.zeros(self.shape[0], dtype=np.uint32)

    def _load_tags(self) -> np.ndarray:
        if not self.tagged:
            return np.zeros(self._tag_shape, dtype=np.uint8)
        t = _load_array(self.dir / "sources.npy", self._tag_shape, np.dtype(np.uint8))
        if t is not None:
            return t
        log.warning("cache %s has no valid source digests; its rows will be recomputed", self.dir)
        self.filled[:] = False
        return np.zeros(self._tag_shape, dtype=np.uint8)

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
        if self.tagged:
            atomic_save(self.dir / "sources.npy", self.tags)
        atomic_save(self.dir / "filled.npy", self.filled)

    def _reload_mask(self) -> None:
        """Rows another process filled since we opened the folder (damaged files are ignored: our own
        state stays, and the next write replaces them)."""
        n = self.shape[0]
        filled = _load_array(self.dir / "filled.npy", (n,), np.dtype(bool))
        sums = _load_array(self.dir / "checksums.npy", (n,), np.dtype(np.uint32))
        tags = (
            _load_array(self.dir / "sources.npy", self._tag_shape, np.dtype(np.uint8))
            if self.tagged
            else self.tags
        )
        if filled is not None and sums is not None and tags is not None:
            self.filled, self.checksums, self.tags = filled, sums, tags

    def missing(self, indices: Sequence[int], tags: np.ndarray | None = None) -> np.ndarray:
        """Indices not filled, or (with ``tags``, one row per index) whose stored tag differs."""
        idx = np.asarray(indices, dtype=np.int64)
        bad = ~self.filled[idx]
        if tags is not None and self.tagged:
            bad |= (self.tags[idx] != np.asarray(tags, dtype=np.uint8)).any(axis=1)
        return idx[bad]

    def tags_of(self, indices: Sequence[int]) -> np.ndarray:
        """The stored source digests of rows ``indices`` ((n, 32) uint8)."""
        return self.tags[np.asarray(indices, dtype=np.int64)].copy()

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
        tags: np.ndarray | None = None,
    ) -> int:
        """Compute and store every row of ``indices`` that is missing, fails its checksum, or (``tags``:
        the expected source digest of each index) was computed from other content.

        ``compute(ix)`` returns the rows for the sorted index array ``ix`` (in a tagged array: ``(rows,
        row_tags)``, the digests of what the rows were really computed from). Rows are flushed before they
        are marked filled, so a killed fill resumes where it stopped. Returns how many rows were computed.
        ``exclusive`` holds the folder's lock while computing, so a concurrent fill of the same rows
        waits and then finds them done (the image cache); ``False`` computes outside the lock and only
        stores under it, so processes filling disjoint rows (AutoAttack's shards) run in parallel.
        """
        if exclusive:
            with self.lock:
                todo = self._todo(indices, tags)
                for s in range(0, len(todo), chunk):
                    ix = todo[s : s + chunk]
                    self._reserve(ix)
                    self._store(ix, *self._computed(compute, ix))
                    if progress:
                        progress(len(ix))
                return len(todo)
        with self.lock:
            todo = self._todo(indices, tags)
        for s in range(0, len(todo), chunk):
            ix = todo[s : s + chunk]
            rows, row_tags = self._computed(compute, ix)
            with self.lock:
                self._reload_mask()  # keep the rows other processes stored meanwhile
                self._reserve(ix)
                self._store(ix, rows, row_tags)
            if progress:
                progress(len(ix))
        return len(todo)

    def _computed(
        self, compute: Callable[[np.ndarray], object], ix: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        out = compute(ix)
        if isinstance(out, tuple):
            rows, row_tags = out
            return np.asarray(rows, dtype=self.dtype), np.asarray(row_tags, dtype=np.uint8)
        if self.tagged:
            raise TypeError("a tagged array's compute returns (rows, row_tags)")
        return np.asarray(out, dtype=self.dtype), None

    def _todo(self, indices: Sequence[int], tags: np.ndarray | None = None) -> np.ndarray:
        self._reload_mask()
        self.verify(indices)
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        missing = self.missing(idx[order], None if tags is None else np.asarray(tags)[order])
        return np.unique(missing)

    def _store(self, ix: np.ndarray, rows: np.ndarray, row_tags: np.ndarray | None = None) -> None:
        """Write rows ``ix``, flush them, then mark them filled (atomically); under the lock."""
        self.array[ix] = rows
        self.array.flush()
        self.release(ix)
        if row_tags is not None:
            self.tags[ix] = row_tags
        self.checksums[ix] = _crc(rows)
        self.filled[ix] = True
        self._verified[ix] = True
        self._save_mask()
