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

``arch`` is a timm architecture (``source`` may be ``torchvision`` or ``entrypoint`` instead);
``weights`` is relative to the card; ``label_space`` is ``imagenet1k``, ``cifar10`` or a list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_vit.errors import CheckpointError, RbvitError
from robustbench_vit.preprocessing import DataConfig

__all__ = ["ModelCard", "read_card"]

_REQUIRED = ("arch", "num_classes", "input_size", "mean", "std", "label_space", "weights")


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


def read_card(path: str | Path) -> ModelCard:
    """Parse and validate a model card; errors name the card and the missing or bad field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"model card not found: {path}") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"model card {path} is not valid JSON: {e}") from None
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"model card {path} is missing: {', '.join(missing)}")
    try:
        dc = DataConfig.from_dict(raw, source=f"card:{path.name}")
    except RbvitError as e:
        raise CheckpointError(f"model card {path}: {e}") from None
    weights = (path.parent / raw["weights"]).resolve()
    return ModelCard(
        path=path.resolve(),
        name=str(raw.get("name") or path.stem),
        arch=str(raw["arch"]),
        source=str(raw.get("source", "timm")),
        num_classes=int(raw["num_classes"]),
        family=str(raw.get("family", "cnn")),
        data_config=dc,
        label_space=raw["label_space"],
        weights=weights,
        kwargs=dict(raw.get("kwargs", {})),
    )
