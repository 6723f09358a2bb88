"""One content identity: every key a number is stored or reused under derives from here.

A result is a function of its inputs' *content*, so its key is a hash of that content, never of names,
paths or sizes:

- **model** (:func:`robustbench_vit.models.identity.model_identity`, completed by
  :func:`loaded_model_identity`): the whole resolved spec, the SHA-256 of the weights file (or the
  loaded tensors of a hub model, module or entry point), the code that builds the architecture (the
  building package's version, or the source of a module's classes and its settings), a card's whole
  content (``arch``, ``kwargs``, ``num_classes``, ``label_space`` in order), the preprocessing and the
  label space's classes in order;
- **data** (:meth:`robustbench_vit.data.cache.ImageCache.identity`): every selected item's id, the SHA-256
  of its file (or pixels) and its dataset class (so a labels file or a class folder takes part);
- **parameters**: the suite's configuration and the run options that change a number, canonicalised
  (:func:`canonical_json`: sorted keys, tuples as lists, no NaN or infinity);
- **software** (:func:`software_identity`): the versions of the libraries every number passes through
  (torch, torchvision, Pillow), so an upgrade recomputes instead of mixing two implementations in one
  run (a version with what its files changed since it was installed:
  :func:`robustbench_vit.installed_code.installed_version`); rbvit's own changes are keyed by each suite's ``version``, which also keys the artifacts the suite
  stores (adversarials, saliency maps, AutoAttack outcomes); rbvit's computing code or tables replaced in
  memory by a notebook by their content (:mod:`robustbench_vit.replaced_code`).

Keys built from these: the run id (:func:`run_key`, and from it every results file), the sweep cell's
completeness (:func:`robustbench_vit.sweeps.run.plan`), the transfer suite's crafted adversarials, the
saliency maps and the AutoAttack outcome stores (all under :func:`derived_key`). The decoded-image
cache tags each slot with its source file's digest (:mod:`robustbench_vit.data.filled`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

__all__ = [
    "canonical_json",
    "digest",
    "run_key",
    "derived_key",
    "loaded_model_identity",
    "software_identity",
    "library_versions",
    "DECODE_VERSION",
]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"a non-finite number ({obj}) cannot be part of an identity")
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def canonical_json(obj: Any) -> str:
    """The one canonical text of a JSON-able value: sorted keys, tuples as lists, compact separators."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def run_key(*, model: dict[str, Any], data: str, suite: dict[str, Any], options: dict[str, Any]) -> str:
    """The run id: 12 hex digits of the digest of everything that shapes a run's numbers."""
    return digest({"model": model, "data": data, "suite": suite, "options": options})[:12]


def derived_key(**parts: Any) -> str:
    """16 hex digits naming an artifact computed from ``parts`` (saliency maps, adversarials, outcomes)."""
    return digest(parts)[:16]


def computing_key() -> dict[str, Any]:
    """How this process computes, besides the content of what it evaluates: the float32 precision and
    attention kernel switches set away from their defaults (:func:`~robustbench_vit.device.numerics_key`) and
    installed packages' code replaced in memory (``Mlp.forward = mine``:
    :func:`~robustbench_vit.library_patches.replaced_library_code`). Part of every run id, sweep cell and stored
    artifact; empty in a fresh process, so default runs keep their keys."""
    from robustbench_vit.device import numerics_key
    from robustbench_vit.library_patches import replaced_library_code

    patched = replaced_library_code()
    return {**numerics_key(), **({"replaced_library_code": patched} if patched else {})}


def loaded_model_identity(loaded: Any) -> dict[str, Any]:
    """A loaded model's identity: what its load recorded, its preprocessing and its label space in order,
    and, when there are any, the hooks registered for every module in this process, the float32 precision
    and attention kernel switches set away from their defaults and installed packages' code replaced in
    memory (they change every model's outputs: :func:`computing_key`)."""
    from robustbench_vit.fingerprint import global_hooks_digest

    ident = {
        **loaded.identity,
        "data_config": {k: v for k, v in loaded.data_config.to_dict().items() if k != "source"},
        "label_space": digest([loaded.label_space.names, loaded.label_space.wnids]),
        "dtype": loaded.dtype,
    }
    hooks = global_hooks_digest()
    if hooks is not None:
        ident["global_hooks"] = hooks
    return {**ident, **computing_key()}


#: the version of rbvit's own decoding and resizing (``data/decode.py``, ``data/preprocessing.py``): bump it
#: when a change there can change a decoded pixel. Part of :func:`software_identity`, it keys every
#: decoded-image cache entry and run id, so a fix re-decodes instead of reusing the old code's pixels;
#: ``tests/test_code_versions.py`` fails when that code changes without a decision about it
DECODE_VERSION = 2  # 2: the CPU resize is Pillow's (timm's pixels), no longer torchvision's tensor resize


@functools.cache
def software_identity() -> dict[str, str]:
    """The versions of the libraries that decode, resize and compute every number (torch, torchvision,
    Pillow) and of rbvit's own decoding (:data:`DECODE_VERSION`): part of every
    run id, sweep cell and decoded-image cache key."""
    from importlib import metadata

    from robustbench_vit.installed_code import installed_version

    versions = {}
    for dist in ("torch", "torchvision", "pillow"):
        try:
            versions[dist] = installed_version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    if versions["pillow"] == "not installed":  # a fork under PIL's import name (pillow-simd) decodes too
        versions["pillow"] = library_versions(("PIL",))["PIL"]
    from robustbench_vit.code_manifest import edited_code

    # the decoder edited in a checkout is other pixels under the same version
    versions["rbvit-decode"] = (
        f"{DECODE_VERSION} {edited}" if (edited := edited_code("decode")) else str(DECODE_VERSION)
    )
    return versions


@functools.cache
def library_versions(modules: tuple[str, ...]) -> dict[str, str]:
    """``module -> "<distribution> <version>"`` of the distributions providing each importable module
    (``cv2`` -> ``opencv-python-headless 4.12.0``; a fork under the same import name is another entry):
    the code a suite computes its numbers with besides torch, so that an upgrade recomputes."""
    from robustbench_vit.installed_code import installed_version, module_distributions

    providers = module_distributions()
    out = {}
    for module in modules:
        dists = sorted(set(providers.get(module, [])))
        out[module] = ", ".join(f"{d} {installed_version(d)}" for d in dists) or "not installed"
    return out
