"""robustbench_vit: robustness benchmark for Vision Transformers and CNNs.

Importing the package is cheap: no model is built, no network is touched, and heavy modules
(torch, timm) are imported only when a public function that needs them is first used.

Example:
    >>> import robustbench_vit as rbvit
    >>> df = rbvit.evaluate("efficientnet_lite0", ["clean", "occlusion"], data="imagenet-samples/val")  # doctest: +SKIP
    >>> rbvit.relative_to_clean(df)  # doctest: +SKIP
    >>> rbvit.board_rows("results/")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> (module, attribute), imported on first use
_LAZY = {
    "evaluate": ("robustbench_vit.api", "evaluate"),
    "benchmark": ("robustbench_vit.benchmarking", "benchmark"),
    "RunOptions": ("robustbench_vit.engine.runner", "RunOptions"),
    "load_model": ("robustbench_vit.models.loading", "load_model"),
    "LoadedModel": ("robustbench_vit.models.loading", "LoadedModel"),
    "ModelSpec": ("robustbench_vit.models.zoo", "ModelSpec"),
    "MODELS": ("robustbench_vit.models.zoo", "MODELS"),
    "SUITES": ("robustbench_vit.suites", "SUITES"),
    "DATASETS": ("robustbench_vit.data.registry", "DATASETS"),
    "METRICS": ("robustbench_vit.metrics.accumulators", "METRICS"),
    "load_results": ("robustbench_vit.storage.reading", "load_results"),
    "load_samples": ("robustbench_vit.storage.reading", "load_samples"),
    "build_leaderboard": ("robustbench_vit.results.leaderboard", "build_leaderboard"),
    "board_rows": ("robustbench_vit.results.leaderboard", "board_rows"),
    "relative_to_clean": ("robustbench_vit.results.analysis", "relative_to_clean"),
    "mcnemar": ("robustbench_vit.results.analysis", "mcnemar"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'robustbench_vit' has no attribute {name!r}")
