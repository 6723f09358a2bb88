"""Content digests of files, remembered the way git's index remembers them.

A file is identified by the SHA-256 of its bytes, never by its name or size. Hashing is paid once: next
to each digest a :class:`DigestIndex` keeps the file's stat tuple ``(size, mtime_ns, ctime_ns, inode)``
and re-hashes only files whose tuple changed. ``ctime`` is set by the kernel on every change of a file's
content or metadata and cannot be set by ``cp -p``, ``rsync -a`` or ``touch -r``, which restore ``mtime``
only; a file replaced by another (``mv``) has another inode.

Racy entries (git's "racy clean" problem): a file changed twice within one tick of the filesystem clock
keeps its stat tuple. A digest is therefore remembered only when the file's ``ctime`` lies more than
:data:`SETTLED_NS` before the moment it was hashed; younger files are hashed again on the next run.

The index file (``<cache>/identity/<key>.npz``) carries a SHA-256 of its own arrays: an index that
fails it is discarded (every file is hashed again), never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from robustbench_vit.data.tempfiles import remove_orphaned_temp_files, temp_path

__all__ = [
    "DigestIndex",
    "stat_tuple",
    "hash_file",
    "sha256_bytes",
    "no_digest",
    "DIGEST_BYTES",
    "SETTLED_NS",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

DIGEST_BYTES = 32
#: a file whose ctime is younger than this when hashed is not remembered (it may change within one tick)
SETTLED_NS = 2_000_000_000
_NO_DIGEST = np.zeros(DIGEST_BYTES, dtype=np.uint8)


def default_cache_dir() -> Path:
    """``$RBVIT_CACHE`` or ``~/.cache/rbvit/images``: where decoded images and content indexes live."""
    env = os.environ.get("RBVIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rbvit" / "images"


def stat_tuple(st: os.stat_result) -> tuple[int, int, int, int]:
    """``(size, mtime_ns, ctime_ns, inode)``: what changes whenever a file's content may have changed."""
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns), int(st.st_ino))


def sha256_bytes(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    """SHA-256 of a buffer as 32 uint8 values."""
    return np.frombuffer(hashlib.sha256(data).digest(), dtype=np.uint8).copy()


def hash_file(
    path: str | Path, *, keep: bool = True
) -> tuple[np.ndarray, tuple[int, int, int, int] | None, bytes]:
    """``(digest, stat tuple, bytes)`` of a file; the stat tuple is ``None`` when the file changed while it
    was read or is too young to be remembered (:data:`SETTLED_NS`). ``keep=False`` streams the file
    (a multi-GB checkpoint is never held in memory) and returns no bytes."""
    with open(path, "rb") as f:
        before = stat_tuple(os.fstat(f.fileno()))
        if keep:
            data = f.read()
            digest = sha256_bytes(data)
        else:
            data, h = b"", hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            digest = np.frombuffer(h.digest(), dtype=np.uint8).copy()
        after = stat_tuple(os.fstat(f.fileno()))
    settled = time.time_ns() - after[2] > SETTLED_NS
    return digest, (after if before == after and settled else None), data


def _check(names: np.ndarray, stats: np.ndarray, digests: np.ndarray) -> str:
    h = hashlib.sha256("\0".join(names.tolist()).encode())
    h.update(np.ascontiguousarray(stats).tobytes())
    h.update(np.ascontiguousarray(digests).tobytes())
    return h.hexdigest()


class DigestIndex:
    """Remembered ``name -> (stat tuple, SHA-256)`` of one set of files (one dataset, or weights files).

    ``names`` are the caller's ids (a dataset's relative item ids, or absolute paths). Lookups are in
    memory; :meth:`save` merges what this process learnt into the file under a lock, so concurrent runs
    never lose each other's entries. ``folder=None`` keeps the index in memory only.
    """

    def __init__(self, folder: Path | None, key: str) -> None:
        self.path = None if folder is None else Path(folder) / f"{key}.npz"
        self._entries: dict[str, tuple[tuple[int, ...], bytes]] = {}
        self._new: dict[str, tuple[tuple[int, ...], bytes]] = {}
        if self.path is not None:
            self._entries = self._read()

    def _read(self) -> dict[str, tuple[tuple[int, ...], bytes]]:
        assert self.path is not None
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                names, stats, digests, check = z["names"], z["stats"], z["digests"], str(z["check"])
            if (
                stats.shape != (len(names), 4)
                or digests.shape != (len(names), DIGEST_BYTES)
                or _check(names, stats, digests) != check
            ):
                raise ValueError("its checksum does not match its entries")
        except Exception as e:  # noqa: BLE001 - any damage means: hash everything again
            log.warning("content index %s is damaged (%s); files will be hashed again", self.path, e)
            return {}
        return {str(n): (tuple(int(v) for v in s), d.tobytes()) for n, s, d in zip(names, stats, digests)}

    def lookup(self, names: Sequence[str], stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(digests (n, 32) uint8, known (n,) bool)``: the remembered digest of every name whose stat
        tuple is unchanged; unknown rows are zeros."""
        out = np.zeros((len(names), DIGEST_BYTES), dtype=np.uint8)
        known = np.zeros(len(names), dtype=bool)
        entries = self._entries
        for i, (name, st) in enumerate(zip(names, stats.tolist())):
            e = entries.get(name)
            if e is not None and e[0] == tuple(st):
                out[i] = np.frombuffer(e[1], dtype=np.uint8)
                known[i] = True
        return out, known

    def record(self, name: str, stat: tuple[int, ...] | None, digest: np.ndarray) -> None:
        """Remember one file's digest (``stat=None``: it changed while read or is too young; not kept)."""
        if stat is None:
            self._entries.pop(name, None)
            return
        entry = (tuple(int(v) for v in stat), np.asarray(digest, dtype=np.uint8).tobytes())
        if self._entries.get(name) != entry:
            self._entries[name] = entry
            self._new[name] = entry

    def save(self) -> None:
        """Merge this process's new entries into the index file (atomic; a read-only cache is skipped)."""
        if self.path is None or not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path) + ".lock"):
                remove_orphaned_temp_files(self.path.parent)
                merged = {**self._read(), **self._new}
                names = np.asarray(list(merged), dtype=str)
                stats = np.asarray([e[0] for e in merged.values()], dtype=np.int64).reshape(-1, 4)
                digests = np.frombuffer(b"".join(e[1] for e in merged.values()), dtype=np.uint8)
                digests = digests.reshape(-1, DIGEST_BYTES)
                tmp = temp_path(self.path)
                with open(tmp, "wb") as f:
                    np.savez(
                        f, names=names, stats=stats, digests=digests, check=_check(names, stats, digests)
                    )
                os.replace(tmp, self.path)
                self._entries = merged
                self._new = {}
        except OSError as e:  # a read-only cache must not stop an evaluation: files are hashed again
            log.debug("cannot save content index %s: %s", self.path, e)

    def digest_of(self, name: str, path: str | Path) -> np.ndarray:
        """One file's digest: remembered when its stat tuple is unchanged, else hashed (and remembered)."""
        st = stat_tuple(os.stat(path))
        digests, known = self.lookup([name], np.asarray([st], dtype=np.int64))
        if known[0]:
            return digests[0]
        digest, stat, _ = hash_file(path, keep=False)
        self.record(name, stat, digest)
        return digest


def no_digest() -> np.ndarray:
    """The all-zero digest: what an unfilled row's tag holds (never the digest of real content)."""
    return _NO_DIGEST.copy()
