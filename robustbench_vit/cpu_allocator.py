"""Keep large CPU buffers mapped between forward passes (glibc): CPU evaluation about 1.3-1.5x faster.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB once its dynamic threshold
has grown) with a fresh ``mmap`` and returns it with ``munmap`` on free, and trims the heap's top whenever
128 KiB are free. A CPU forward pass allocates activation buffers of tens to hundreds of MiB per layer, so
each batch maps, page-faults and unmaps them again: on a 2-core machine the process spends about as much
time in the kernel as in PyTorch's kernels. With both thresholds at 1 GiB those buffers come from the
heap, which keeps them between batches (measured with ``resnet18``, batch 64 at 224 px, 2 cores: 2.0 s ->
1.3 s per batch, peak RSS +10-20%); ``benchmarks/bench_allocator.py`` prints the ratio.

:func:`keep_cpu_buffers` is what the ``rbvit`` command does at start (it owns its process); a library call
never changes a process-wide setting. It sets the settings with ``mallopt`` and in the environment, so the
processes rbvit starts (``--devices`` shares, Ray's local workers) start with them. A setting the user made
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``) is theirs and left alone, as is
everything when ``RBVIT_MALLOC=default``. Numbers never depend on it: only where memory comes from.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["keep_cpu_buffers", "THRESHOLD_BYTES"]

log = logging.getLogger(__name__)

#: the mmap and trim thresholds set (bytes)
THRESHOLD_BYTES = 1 << 30
#: glibc's mallopt parameters and the environment variables glibc reads them from at start
_SETTINGS = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}
_USER_SETTINGS = (*_SETTINGS, "MALLOC_TOP_PAD_")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - musl and others have no such symbol: not glibc
        return libc
    except (OSError, AttributeError):
        return None


def keep_cpu_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`THRESHOLD_BYTES` in this process and the ones it
    starts; ``False`` (nothing changed) off glibc, under ``RBVIT_MALLOC=default``, or when the user set one
    of glibc's malloc variables."""
    if os.environ.get("RBVIT_MALLOC", "").strip().lower() == "default":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    for param in _SETTINGS.values():
        if libc.mallopt(param, THRESHOLD_BYTES) != 1:
            log.debug("mallopt(%d, %d) was refused; malloc left as it was", param, THRESHOLD_BYTES)
            return False
    os.environ.update({name: str(THRESHOLD_BYTES) for name in _SETTINGS})
    log.debug("malloc keeps buffers below %d bytes between batches", THRESHOLD_BYTES)
    return True
