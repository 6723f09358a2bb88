"""Shared helpers for the benchmark scripts (timing, data location)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RBVIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
IMAGENET_SAMPLES = SHARED / "imagenet-samples" / "val"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best
