"""How every random draw of a suite is seeded: from (run seed, suite, condition, first index of the batch),
never from a global RNG or the clock, so a seed gives the same draws on any device and batch layout."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["derive_seed", "batch_generator", "seed_of", "model_rng", "global_rng", "caller_rng_kept"]


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any JSON-able parts (no global RNG, no clock)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def batch_generator(seed: int, suite: str, condition: str, first_index: int) -> torch.Generator:
    """The one way random draws are seeded: (run seed, suite, condition, first dataset index of the batch).
    Perturbations draw from this CPU generator (or device generators seeded from it)."""
    return torch.Generator().manual_seed(derive_seed(seed, suite, condition, first_index))


def seed_of(generator: torch.Generator, bits: int = 31) -> int:
    """The batch's seed as an integer, for libraries that take a seed rather than a generator (numpy in
    the imagecorruptions reference, foolbox's global-RNG random start)."""
    return generator.initial_seed() % (1 << bits)


@contextlib.contextmanager
def caller_rng_kept(device: torch.device) -> Iterator[None]:
    """torch's global RNG (the CPU's and ``device``'s) put back as the caller had it when the block ends."""
    devices = [device] if device.type in ("cuda", "mps") else []
    kind = {"device_type": device.type} if devices else {}
    with torch.random.fork_rng(devices=devices, **kind):
        yield


@contextlib.contextmanager
def global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside the block (for code that draws from it: a model's own
    noise, foolbox's random start), and the caller's state put back after."""
    with caller_rng_kept(device):
        torch.manual_seed(seed)
        yield


def model_rng(seed: int, first_index: int, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The global RNG, which a model's own noise draws from (a randomized defence's input noise, dropout left
    on), seeded from (run seed, first index of the batch) for one batch, and the caller's state put back
    after: the model's draws are the same on every run, resumed or not, whatever the caller drew before."""
    return global_rng(derive_seed(seed, "model", first_index), device)
