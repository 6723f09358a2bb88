"""Model cards: a small JSON file that describes a local checkpoint completely.

Example card (``cifar_vit.json``)::

    {
      "name": "cifar_vit_tiny",
      "arch": "vit_tiny_patch16_224",
      "kwargs": {"img_size": 32, "patch_size": 4},
      "num_classes": 10,
      "family": "vit",
      "input_size": [3, 32, 32],
      "crop_pct": 1.0,
      "interpolation": "bilinear",
      "mean": [0.4914, 0.4822, 0.4465],
      "std": [0.2470, 0.2435, 0.2616],
      "label_space": "cifar10",
      "weights": "cifar_vit.safetensors"
    }

``arch`` is a timm architecture (``source`` may be ``torchvision`` instead); ``weights`` is relative to
the card; ``label_space`` is ``imagenet1k``, ``cifar10`` or a list. ``checkpoint_key`` picks the weights
of a checkpoint that holds several (``state_dict_ema``). Optional fields left out take timm's defaults
(``crop_pct`` 0.875, ``interpolation`` bilinear), so a field the card does not know is refused with the
closest known name: a misspelt ``crop_ptc`` would otherwise evaluate with the default crop and exit 0.

A card travels with a checkpoint and is untrusted data: it may only name a registered timm or
torchvision architecture, with keyword values of JSON types. It can never name code to call (an
entry point ``module:factory`` is accepted only where the user typed it: the command line or Python).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import CheckpointError, RbvitError
from robustbench_vit.registry import first_unknown

__all__ = ["ModelCard", "read_card", "read_card_json", "CARD_SOURCES", "MAX_CARD_BYTES"]

#: a card is a few hundred bytes; anything larger is not a card (and is never read whole)
MAX_CARD_BYTES = 1 << 20

_REQUIRED = ("arch", "num_classes", "input_size", "mean", "std", "label_space", "weights")
#: optional fields that change the model or its preprocessing
_OPTIONAL = ("name", "source", "kwargs", "family", "crop_pct", "crop_mode", "interpolation", "checkpoint_key")
#: fields that only document the card (never read)
_NOTES = ("description", "paper", "url", "license", "notes")
#: fields whose JSON type is checked (a ``null`` crop_pct must not become timm's default silently)
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "crop_pct": ((int, float), "number"),
    "crop_mode": ((str,), "non-empty string"),
    "interpolation": ((str,), "non-empty string"),
    "checkpoint_key": ((str,), "non-empty string"),
}
#: the only builders a card may name
CARD_SOURCES = ("timm", "torchvision")
#: builder keywords that load weights or a config from elsewhere (a file, the hub): a card's weights are its
#: ``weights`` field, hashed into the model's identity; ``checkpoint_path`` would load an unhashed file
#: (the weights of a ``--random-weights`` run), ``pretrained_cfg`` a hub config
_LOADING_KWARGS = {
    "timm": ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"),
    "torchvision": ("weights", "progress"),
}
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_value(v: Any) -> bool:
    if isinstance(v, _JSON_SCALARS):
        return True
    if isinstance(v, list):
        return all(_json_value(x) for x in v)
    return False


def _check_untrusted(path: Path, raw: dict[str, Any]) -> None:
    """Refuse anything in a card that could run code or reach past the two model libraries."""
    source = str(raw.get("source", "timm"))
    if source not in CARD_SOURCES:
        raise CheckpointError(
            f"model card {path}: source {source!r} is not allowed in a card (allowed: "
            f"{', '.join(CARD_SOURCES)}); pass an entry point as --model module:factory instead"
        )
    arch = str(raw["arch"])
    if source == "timm":
        import timm

        if not timm.is_model(arch.split(".")[0]):
            raise CheckpointError(f"model card {path}: {arch!r} is not a timm architecture")
    else:
        import torchvision

        if arch not in torchvision.models.list_models():
            raise CheckpointError(f"model card {path}: {arch!r} is not a torchvision architecture")
    kwargs = raw.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(
        isinstance(k, str) and _json_value(v) for k, v in kwargs.items()
    ):
        raise CheckpointError(
            f"model card {path}: kwargs must map names to numbers, strings, booleans or lists"
        )
    if "num_classes" in kwargs:
        raise CheckpointError(f"model card {path}: give num_classes as the card's field, not in kwargs")
    loading = sorted(set(kwargs) & set(_LOADING_KWARGS[source]))
    if loading:
        raise CheckpointError(
            f"model card {path}: kwargs {', '.join(loading)} would load weights or a config from elsewhere; "
            "a card's weights are its weights field"
        )


@dataclass(frozen=True)
class ModelCard:
    path: Path
    name: str
    arch: str
    source: str
    num_classes: int
    family: str
    data_config: DataConfig
    label_space: Any
    weights: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_key: str | None = None


def _check_fields(path: Path, raw: dict[str, Any]) -> None:
    """Refuse a field the card does not know (naming the closest known one) and an optional field of the
    wrong JSON type: either would otherwise leave a default in place without a word."""
    unknown = first_unknown(raw, (*_REQUIRED, *_OPTIONAL, *_NOTES))
    if unknown:
        key, close = unknown
        hint = f"did you mean {close!r}? " if close else ""
        raise CheckpointError(
            f"model card {path}: unknown field {key!r}; {hint}(known: {', '.join((*_REQUIRED, *_OPTIONAL))}"
            f"; notes: {', '.join(_NOTES)})"
        )
    for key, (types, what) in _TYPES.items():
        value = raw.get(key)
        if key in raw and (isinstance(value, bool) or not isinstance(value, types) or value == ""):
            raise CheckpointError(f"model card {path}: {key} must be a {what}, got {value!r}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a card may hold")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: ``{"arch": "a", "arch": "b"}`` reads as ``b`` in Python
    and as ``a`` to a person reading from the top, so a card may not say it."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object; keep one")
        out[key] = value
    return out


def read_card_json(path: str | Path) -> dict[str, Any]:
    """The JSON object of a card file, read safely: only a regular file (never a FIFO or a device behind a
    link), at most :data:`MAX_CARD_BYTES`, strict JSON (no NaN/Infinity, no key twice in one object)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CheckpointError(f"model card not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read model card {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"model card {path} is not a regular file")
        if st.st_size > MAX_CARD_BYTES:
            raise CheckpointError(
                f"model card {path} is {st.st_size} bytes; a card is at most {MAX_CARD_BYTES}"
            )
        data = f.read(MAX_CARD_BYTES + 1)
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"model card {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"model card {path} must be a JSON object")
    return raw


def read_card(path: str | Path) -> ModelCard:
    """Parse and validate a model card; errors name the card and the missing or bad field."""
    path = Path(path)
    raw = read_card_json(path)
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"model card {path} is missing: {', '.join(missing)}")
    _check_fields(path, raw)
    _check_untrusted(path, raw)
    size = raw["input_size"]
    if not (
        isinstance(size, list)
        and len(size) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise CheckpointError(f"model card {path}: input_size must be [3, H, W] (integers), got {size!r}")
    try:
        dc = DataConfig.from_dict(raw, source=f"card:{path.name}")
    except RbvitError as e:
        raise CheckpointError(f"model card {path}: {e}") from None
    if not isinstance(raw["weights"], str) or not raw["weights"]:
        raise CheckpointError(f"model card {path}: weights must be a file name, got {raw['weights']!r}")
    nc = raw["num_classes"]
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise CheckpointError(f"model card {path}: num_classes must be an integer >= 1, got {nc!r}")
    for key in ("name", "family"):
        if key in raw and not isinstance(raw[key], str):
            raise CheckpointError(f"model card {path}: {key} must be a string, got {raw[key]!r}")
    weights = (path.parent / raw["weights"]).resolve()
    return ModelCard(
        path=path.resolve(),
        name=str(raw.get("name") or path.stem),
        arch=str(raw["arch"]),
        source=str(raw.get("source", "timm")),
        num_classes=nc,
        family=str(raw.get("family", "cnn")),
        data_config=dc,
        label_space=raw["label_space"],
        weights=weights,
        kwargs=dict(raw.get("kwargs", {})),
        checkpoint_key=raw.get("checkpoint_key") or None,
    )
