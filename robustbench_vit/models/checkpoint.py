"""Loading untrusted checkpoints: safetensors, or ``torch.load(weights_only=True)``; never pickled code."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from robustbench_vit.errors import CheckpointError

__all__ = ["read_state_dict", "load_state_dict_strict"]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "module", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` dict from ``.safetensors`` or a weights-only torch file.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and a ``module.`` prefix from
    DataParallel are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
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
    for _ in range(2):
        if isinstance(sd, dict):
            for key in _WRAPPER_KEYS:
                if key in sd and isinstance(sd[key], dict):
                    sd = sd[key]
                    break
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
