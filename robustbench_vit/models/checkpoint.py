"""Loading untrusted checkpoints: safetensors, or ``torch.load(weights_only=True)``; never pickled code."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from robustbench_vit.errors import CheckpointError

__all__ = ["read_state_dict", "load_state_dict_strict", "split_checkpoint"]

log = logging.getLogger(__name__)

#: where checkpoints keep their weights, in the order they are looked for when no key is named (timm's
#: ``load_checkpoint`` default: the plain weights, not an EMA copy beside them)
_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "module", "net")


def split_checkpoint(ref: str | Path) -> tuple[Path, str | None]:
    """``FILE#KEY`` -> ``(FILE, KEY)``: which of a checkpoint's weight sets to load (``run.pth#state_dict_ema``).
    A reference that names an existing file (a ``#`` in its name) is that file, without a key."""
    text = str(ref)
    path, sep, key = text.rpartition("#")
    if not sep or not key or Path(text).is_file():
        return Path(text), None
    return Path(path), key


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _weight_sets(obj: object) -> list[str]:
    """The top-level keys of a checkpoint dict holding named tensors (a state dict), directly or under a
    wrapper key (an optimizer's state, keyed by parameter numbers, is not one)."""
    if not isinstance(obj, dict):
        return []
    return [
        str(k)
        for k, v in obj.items()
        if _is_tensor_dict(v)
        or (isinstance(v, dict) and any(_is_tensor_dict(v.get(w)) for w in _WRAPPER_KEYS))
    ]


#: checkpoints whose default weight set this process has named already
_TOLD: set[tuple[str, tuple[str, ...]]] = set()


def _select(sd: object, path: Path, key: str | None) -> object:
    """The weights a checkpoint holds under ``key``, or under the first wrapper key when none is named; a
    checkpoint holding several weight sets says which one it evaluates (an EMA copy is other numbers)."""
    if key is not None:
        if not isinstance(sd, dict) or not isinstance(sd.get(key), dict):
            held = ", ".join(_weight_sets(sd)) or "no named weight sets"
            raise CheckpointError(f"checkpoint {path} has no weights under {key!r} (it holds: {held})")
        return sd[key]
    sets = _weight_sets(sd)
    for _ in range(2):
        if isinstance(sd, dict):
            for wrapper in _WRAPPER_KEYS:
                if wrapper in sd and isinstance(sd[wrapper], dict):
                    told = (str(path), tuple(sets))
                    if len(sets) > 1 and wrapper in sets and told not in _TOLD:
                        _TOLD.add(told)  # once per file and process (a resume loads it again)
                        others = ", ".join(repr(k) for k in sets if k != wrapper)
                        log.warning(
                            "checkpoint %s holds weights under %r and %s; evaluating %r (timm's default): "
                            "name another as --checkpoint '%s#KEY' or a card's checkpoint_key",
                            path,
                            wrapper,
                            others,
                            wrapper,
                            path,
                        )
                        sets = []
                    sd = sd[wrapper]
                    break
    return sd


def read_state_dict(path: str | Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` dict from ``.safetensors`` or a weights-only torch file.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and a ``module.`` prefix from
    DataParallel are unwrapped. ``key`` (or a ``FILE#KEY`` path) names the weight set to load from a
    checkpoint holding several (``state_dict`` and ``state_dict_ema``).
    """
    path, named = split_checkpoint(path)
    key = key or named
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        if key is not None:
            raise CheckpointError(
                f"checkpoint {path} is safetensors, a flat set of tensors: it has no key {key!r}"
            )
        from safetensors.torch import load_file

        try:
            sd: object = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read safetensors checkpoint {path}: {e}") from None
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"cannot read {path} as a weights-only checkpoint ({type(e).__name__}); "
                "save it as safetensors or as a plain state_dict of tensors"
            ) from None
    sd = _select(sd, path, key)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd  # type: ignore[return-value]


def _short(keys: list[str], most: int = 6) -> str:
    head = ", ".join(keys[:most])
    return head + (f", ... (+{len(keys) - most})" if len(keys) > most else "")


def load_state_dict_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """Load ``sd`` into ``module``; any missing/unexpected key or shape mismatch is one clear error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"checkpoint {what} does not match the architecture; " + "; ".join(parts))
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"checkpoint {what} has shape mismatches: {_short(bad, 3)}")
    module.load_state_dict(sd, strict=True)
    log.info("loaded %d tensors from %s", len(sd), what)
