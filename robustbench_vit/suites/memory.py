"""Out of device memory during a condition: retry without changing a number.

Every draw a suite makes is seeded per batch (occlusion masks, shuffles, noise, random starts), so the
batch a perturbation sees is part of the result. A *forward pass* that runs out of memory is therefore
retried in chunks of half its images while the perturbed batch stays as the requested batch size made
it; only a perturbation that runs out of memory itself (an attack's backward pass) is retried with half
the batch, which the rows record as their ``batch_size``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from robustbench_vit.errors import RbvitError

__all__ = ["FORWARD_CHUNK", "ForwardOutOfMemory", "retry_out_of_memory", "chunked_forward"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``EvalContext.state`` key: images per forward pass after one ran out of memory
FORWARD_CHUNK = "forward_chunk"


class ForwardOutOfMemory(Exception):
    """A forward pass of ``images`` perturbed images ran out of device memory (the perturbation did not)."""

    def __init__(self, images: int) -> None:
        super().__init__(images)
        self.images = images


def _too_big(what: str) -> RbvitError:
    return RbvitError(f"GPU out of memory even at batch size 1 ({what}); use a smaller model or --device cpu")


def retry_out_of_memory(
    run: Callable[[int], T], state: dict[str, Any], batch_size: int, what: str
) -> tuple[T, int]:
    """``(run(batch_size), batch size used)``: forward passes chunked, then the batch halved, on OOM."""
    bs = batch_size
    state.pop(FORWARD_CHUNK, None)
    try:
        while True:
            try:
                return run(bs), bs
            except ForwardOutOfMemory as e:
                chunk = min(state.get(FORWARD_CHUNK) or e.images, e.images) // 2
                if chunk < 1:
                    raise _too_big(what) from None
                state[FORWARD_CHUNK] = chunk
                torch.cuda.empty_cache()
                log.warning(
                    "out of memory; retrying %s with forward passes of %d images (perturbed in batches of %d "
                    "as requested: the same draws)",
                    what,
                    chunk,
                    e.images,
                )
            except torch.OutOfMemoryError:
                if bs == 1:
                    raise _too_big(what) from None
                bs //= 2
                torch.cuda.empty_cache()
                log.warning("out of memory; retrying %s with batch size %d", what, bs)
    finally:
        state.pop(FORWARD_CHUNK, None)


def chunked_forward(
    logits: Callable[[torch.Tensor], torch.Tensor], state: dict[str, Any], x: torch.Tensor
) -> torch.Tensor:
    """``logits(x)``, in chunks of ``state[FORWARD_CHUNK]`` images once a forward pass ran out of memory;
    an out-of-memory error here is raised as :class:`ForwardOutOfMemory`."""
    chunk = state.get(FORWARD_CHUNK)
    try:
        if not chunk or chunk >= len(x):
            return logits(x)
        return torch.cat([logits(part) for part in x.split(chunk)])
    except torch.OutOfMemoryError:
        raise ForwardOutOfMemory(len(x)) from None
