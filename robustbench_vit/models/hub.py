"""Weight downloads that cannot happen fail at once, in one line.

Offline, the Hugging Face client retries every request with back-off (about a minute per model, dozens of
warning lines). Before a pretrained download, :func:`downloads_possible` tries one TCP connection to the
host (a few seconds at most, once per process); when it fails, the download runs in the client's offline
mode, so weights already in the cache load as usual and missing ones raise at once. :func:`unavailable`
words the error: the model, the cache folder that would be used and the variable that moves it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from robustbench_vit.errors import WeightsUnavailableError

__all__ = [
    "downloads_possible",
    "offline_unless_reachable",
    "unavailable",
    "hf_cache_dir",
    "torch_cache_dir",
    "HF_HOST",
]

HF_HOST = "huggingface.co"
#: seconds one connection attempt may take before the host counts as unreachable
CONNECT_TIMEOUT_S = 3.0


@functools.cache
def downloads_possible(host: str = HF_HOST, port: int = 443) -> bool:
    """Whether ``host`` accepts a TCP connection (asked once per process)."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Run a Hugging Face download in offline mode when the hub cannot be reached (cached files still
    load); yields whether the block runs offline."""
    offline = _offline_env() or not downloads_possible()
    if not offline or _offline_env():
        yield offline
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on it
        yield offline
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = before


def hf_cache_dir() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def torch_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def unavailable(name: str, ref: str, err: Exception, *, hub: str = "hf") -> WeightsUnavailableError:
    """One line: which weights, why, the cache folder that would hold them and how to fill or move it."""
    why = " ".join(str(err).split()) or type(err).__name__
    why = why if len(why) <= 160 else why[:157].rsplit(" ", 1)[0] + "..."
    if hub == "torch":
        where, var = torch_cache_dir(), "TORCH_HOME"
        offline = not downloads_possible("download.pytorch.org")
    else:
        where, var = hf_cache_dir(), "HF_HOME"
        offline = _offline_env() or not downloads_possible()
    reason = "no network and the weights are not in the cache" if offline else f"{type(err).__name__}: {why}"
    return WeightsUnavailableError(
        f"cannot fetch pretrained weights for {name} ({ref}): {reason} ({where}); fill that cache online once, "
        f"set {var} to a filled one, or pass --checkpoint FILE"
    )
