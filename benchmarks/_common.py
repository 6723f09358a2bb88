"""Shared helpers for the benchmark scripts: one argument parser, timing, data location.

The shared data is found as the package and the tests find it: ``$RBVIT_DATA``, else ``../shared/data``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RBVIT_DATA", ROOT.parent / "shared" / "data"))
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


def bench_parser(
    doc: str | None,
    *,
    model: str | None = None,
    data: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
) -> argparse.ArgumentParser:
    """The options every benchmark shares (``--model --data --limit --batch-size --device --dtype``), with
    this benchmark's defaults; a benchmark adds its own options to the returned parser."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    if model is not None:
        ap.add_argument("--model", default=model, help=f"model reference (default {model})")
    if data:
        ap.add_argument(
            "--data", default=str(IMAGENET_SAMPLES), help="image folder (default: the shared samples)"
        )
    if limit is not None:
        ap.add_argument("--limit", type=int, default=limit, help=f"images (default {limit})")
    if batch_size is not None:
        ap.add_argument(
            "--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})"
        )
    ap.add_argument("--device", default=device, help="cpu, cuda, ... (default: auto)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument(
        "--random-weights", action="store_true", help="do not download weights (timing needs none)"
    )
    return ap


def wants_pretrained(args: argparse.Namespace) -> bool:
    """Pretrained weights unless asked not to, or the model is one of timm's tiny test architectures."""
    model = getattr(args, "model", "")
    return not (args.random_weights or model.startswith("timm:test_"))
