"""Models a suite builds besides the evaluated one (a transfer source, a saliency model, a CKA comparison
model): their part of a run's identity, taken when the run begins, and the check that the model loaded later
is that one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustbench_vit.errors import CheckpointError, RbvitError
from robustbench_vit.models.identity import model_identity
from robustbench_vit.models.loading import LoadedModel, check_same_files, load_model
from robustbench_vit.models.names import resolve_spec
from robustbench_vit.models.zoo import ModelSpec

__all__ = ["referenced_identity", "built_identity", "check_loaded_as_named"]


def referenced_identity(ref: str, *, pretrained: bool, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The content identity of the model ``ref`` names: its files' (:func:`model_identity`), or, for an entry
    point, what it returns (:func:`built_identity`); ``{"ref": ref}`` for the evaluated model's own name,
    which the run identifies already."""
    try:
        spec = resolve_spec(ref)
    except RbvitError:
        return {"ref": ref}
    if spec.source == "entrypoint":  # its code decides what it returns: built, then identified
        return built_identity(spec, pretrained=pretrained, cache_dir=cache_dir)
    return model_identity(spec, pretrained=pretrained, cache_dir=cache_dir)


def built_identity(spec: ModelSpec, *, pretrained: bool = True, cache_dir: str | Path | None = None) -> dict:
    """The identity of a model only its building tells (an entry point, whose code decides the tensors it
    returns): built on the CPU, then identified as a run identifies it (its tensors, code, preprocessing
    and label space)."""
    from robustbench_vit.identity import loaded_model_identity

    loaded = load_model(spec, device="cpu", pretrained=pretrained, cache_dir=cache_dir, remember_state=False)
    return {k: v for k, v in loaded_model_identity(loaded).items() if k != "dtype"}


def check_loaded_as_named(loaded: LoadedModel, named: dict[str, Any] | None, ref: str) -> None:
    """``loaded`` is the model the run's identity named when it began (``named``): a source checkpoint or
    card overwritten since, or an entry point returning other tensors or code, is refused, never computed
    with under the old digest."""
    if named is None or "ref" in named:
        return
    check_same_files(loaded.spec.name, named, loaded.identity, "since the run began")
    if loaded.spec.source == "entrypoint" and any(
        named.get(k) != loaded.identity.get(k) for k in ("weights", "code")
    ):
        raise CheckpointError(f"entry point {ref} returned another model than when the run began; run again")
