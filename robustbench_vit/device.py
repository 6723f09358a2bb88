"""Device and precision selection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from robustbench_vit.errors import ConfigError

__all__ = ["select_device", "autocast_dtype", "autocast", "to_device", "DTYPES"]

DTYPES = ("fp32", "bf16", "fp16")


def select_device(device: str | None = None) -> torch.device:
    """``None``/``auto`` picks cuda > mps > cpu; otherwise the named device (checked)."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    if (
        dev.type == "cuda"
        and dev.index is not None
        and torch.cuda.is_available()
        and dev.index >= torch.cuda.device_count()
    ):
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"--device {device}: MPS is not available on this machine (use cpu or auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    return dev


def autocast_dtype(dtype: str) -> torch.dtype | None:
    """Map ``fp32``/``bf16``/``fp16`` to the autocast dtype (``None`` = full precision)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} not in {DTYPES}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_device(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t.to(device, dtype)`` without making the host wait for the device.

    A plain ``.to("cuda")`` of a pageable CPU tensor synchronises the stream: the host waits until all
    queued work (the previous batch's forward pass) is done, and the GPU then idles while the next
    batch is prepared. Here a CPU tensor bound for CUDA is copied through page-locked memory without
    blocking, ordered on the current stream (PyTorch's caching host allocator keeps the buffer until
    the copy has run).
    """
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory().to(device, non_blocking=True)
        return t if dtype is None else t.to(dtype)
    return t.to(device) if dtype is None else t.to(device, dtype)
