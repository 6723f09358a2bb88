"""Batches from the decoded-image cache to the model's device, read ahead so the device never waits.

Reader threads copy the next batches' rows out of the memory-mapped cache (on a CUDA device straight
into page-locked buffers from PyTorch's caching host allocator, which keeps a buffer until the copy
out of it has finished); the copy to the device runs on a side CUDA stream, issued before the
current batch is handed out, so it overlaps the model's work on that batch. Images arrive as float
[0, 1] on the device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from robustbench_vit.data.cache import ImageCache

__all__ = ["device_batches", "READ_AHEAD"]

#: batches read ahead (one reader thread each)
READ_AHEAD = 3


def _read(
    cache: ImageCache, labels: np.ndarray, ix: np.ndarray, pin: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one batch on the host (page-locked for a CUDA copy)."""
    y = torch.from_numpy(np.ascontiguousarray(labels[ix]))
    if not pin:
        return cache.batch(ix), y
    buf = torch.empty((len(ix), *cache.shape[1:]), dtype=torch.uint8, pin_memory=True)
    return cache.batch(ix, out=buf), y.pin_memory()


def device_batches(
    cache: ImageCache,
    indices: np.ndarray,
    labels: np.ndarray,
    device: torch.device,
    batch_size: int,
    *,
    read_ahead: int = READ_AHEAD,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x in [0,1] float on device, labels on device, dataset indices)`` in order.

    ``labels`` is indexed by dataset index. Stopping early (a break, an out-of-memory retry) stops the
    readers before returning.
    """
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    cuda = device.type == "cuda"
    side = torch.cuda.Stream(device) if cuda else None
    pool = ThreadPoolExecutor(max_workers=max(1, read_ahead), thread_name_prefix="rbvit-read")
    pending: deque[Future[tuple[torch.Tensor, torch.Tensor]]] = deque()

    def fetch(k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Batch ``k`` on the device, images still uint8 (copied on the side stream); keeps the readers
        busy. No copy here waits for the device: the model's queue is never drained between batches."""
        while len(pending) < read_ahead and k + len(pending) < len(chunks):
            pending.append(pool.submit(_read, cache, labels, chunks[k + len(pending)], cuda))
        if k >= len(chunks):
            return None
        host_x, host_y = pending.popleft().result()
        if side is None:
            return host_x, host_y
        with torch.cuda.stream(side):
            return host_x.to(device, non_blocking=True), host_y.to(device, non_blocking=True)

    try:
        staged = fetch(0)
        for k, ix in enumerate(chunks):
            assert staged is not None
            cur_x, y = staged
            if side is not None:
                main = torch.cuda.current_stream(device)
                main.wait_stream(side)  # the copy of batch k is done before the model reads it
                cur_x.record_stream(main)  # and its memory is not reused while the model still reads it
                y.record_stream(main)
            staged = fetch(k + 1)  # batch k + 1's copy overlaps the model's work on batch k
            yield cur_x.float().div_(255.0), y, torch.from_numpy(ix)
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
