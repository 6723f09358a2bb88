"""robustbench_vit: robustness benchmark for Vision Transformers and CNNs.

Importing the package is cheap: no model is built, no network is touched, and heavy modules
(torch, timm) are imported only when a public function that needs them is first used.

Example:
    >>> import robustbench_vit as rbvit
    >>> records = rbvit.evaluate("efficientnet_lite0", "clean", data="imagenet-samples/val")  # doctest: +SKIP
    >>> df = rbvit.load_results("results/")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "evaluate": "robustbench_vit.runner",
    "RunOptions": "robustbench_vit.runner",
    "load_model": "robustbench_vit.models.loading",
    "LoadedModel": "robustbench_vit.models.loading",
    "ModelSpec": "robustbench_vit.models.zoo",
    "MODELS": "robustbench_vit.models.zoo",
    "SUITES": "robustbench_vit.suites",
    "DATASETS": "robustbench_vit.data.registry",
    "load_results": "robustbench_vit.store",
    "leaderboard": "robustbench_vit.leaderboard",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robustbench_vit' has no attribute {name!r}")
