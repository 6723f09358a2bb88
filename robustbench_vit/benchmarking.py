"""``rbvit.benchmark``: RobustBench's evaluation in one call (Croce et al. 2021, "RobustBench").

The threat models and budgets of RobustBench's leaderboards, on its image sets, with its protocol:

| dataset | threat | rbvit suite | budget | images |
|---|---|---|---|---|
| ``imagenet`` | ``Linf`` | ``autoattack`` standard | 4/255 | ``robustbench-imagenet-5000`` |
| ``imagenet`` | ``corruptions`` | ``imagenet_c`` (the released files) | 15 x 5 | every image under ``data`` |
| ``cifar10`` | ``Linf`` / ``L2`` | ``autoattack`` standard | 8/255 / 0.5 | ``robustbench-cifar10-10000`` |
| ``cifar10`` | ``corruptions`` | ``corruptions`` (``table=cifar10``) | 15 x 5 | ``robustbench-cifar10-10000`` |

ImageNet images are preprocessed as RobustBench's ``Res256Crop224`` (resize 256, centre crop 224,
bilinear; the model's own mean/std inside), CIFAR-10 as they are. ``n_examples`` takes the first images
of RobustBench's list, as its ``load_*`` functions do. CIFAR-10-C is generated with make_cifar_c's
tables rather than read from the released files (rows say ``param_table``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_vit.errors import ConfigError
from robustbench_vit.published.cards import RES256_CROP224

__all__ = ["benchmark", "THREATS"]

#: (dataset, threat) -> (suite, suite parameters, shipped subset or None)
THREATS: dict[tuple[str, str], tuple[str, dict[str, Any], str | None]] = {
    ("imagenet", "Linf"): ("autoattack", {"norm": "linf", "eps": "4/255"}, "robustbench-imagenet-5000"),
    # the 5,000 ids of RobustBench's ImageNet list in every corruption/severity folder, resized as it does
    ("imagenet", "corruptions"): ("imagenet_c", {"preprocessing": "resize"}, "robustbench-imagenet-5000"),
    ("cifar10", "Linf"): ("autoattack", {"norm": "linf", "eps": "8/255"}, "robustbench-cifar10-10000"),
    ("cifar10", "L2"): ("autoattack", {"norm": "l2", "eps": "0.5"}, "robustbench-cifar10-10000"),
    ("cifar10", "corruptions"): ("corruptions", {"table": "cifar10"}, "robustbench-cifar10-10000"),
}


def benchmark(
    model: Any,
    threat: str = "Linf",
    *,
    dataset: str = "imagenet",
    data: str | None = None,
    n_examples: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` as RobustBench's leaderboard for ``threat`` reports them.

    Returns ``{"model", "dataset", "threat", "eps", "n", "clean_accuracy", "robust_accuracy", "rows"}``;
    for ``corruptions`` ``robust_accuracy`` is the mean accuracy over the 15 corruptions x 5 severities.
    ``kwargs`` go to :func:`robustbench_vit.evaluate` (``batch_size``, ``device``, ``out``, ...).
    """
    from robustbench_vit.api import evaluate
    from robustbench_vit.data.subset import shipped_subset_items

    key = (dataset, threat)
    if key not in THREATS:
        known = ", ".join(f"{d}/{t}" for d, t in THREATS)
        raise ConfigError(f"RobustBench has no {dataset}/{threat} leaderboard (known: {known})")
    suite, params, subset = THREATS[key]
    params = {**params, **kwargs.pop("suite_params", {})}
    if dataset == "imagenet" and isinstance(model, str) and not _is_robustbench_model(model):
        # RobustBench's default for a model without its own entry; its own models keep the transform
        # their model_info names (the robustbench: loader reads it)
        kwargs.setdefault("override_preprocessing", RES256_CROP224)
    with tempfile.TemporaryDirectory() as tmp:
        if subset is not None and n_examples is not None:
            items = shipped_subset_items(subset)[:n_examples]
            listed = Path(tmp) / f"{subset}-first-{n_examples}.txt"
            listed.write_text("\n".join(items) + "\n")
            subset = str(listed)
        elif n_examples is not None:
            kwargs.setdefault("limit", n_examples)
        df = evaluate(model, suite, data=data, subset=subset, suite_params=params, **kwargs)
    return _summary(df, dataset, threat, params)


def _is_robustbench_model(model: str) -> bool:
    from robustbench_vit.models.names import resolve_spec

    return resolve_spec(model).source == "robustbench"


def _summary(df: pd.DataFrame, dataset: str, threat: str, params: dict[str, Any]) -> dict[str, Any]:
    def value(metric: str, condition: str | None = None) -> float:
        rows = df[df.metric == metric]
        if condition is not None:
            rows = rows[rows.condition.str.fullmatch(condition)]
        else:  # the final condition: not AutoAttack's per-stage rows, not the clean variant
            rows = rows[
                ~rows.condition.str.contains("/after=", regex=False) & ~rows.condition.str.endswith("/clean")
            ]
        return float(rows.value.iat[-1]) if len(rows) else float("nan")

    out: dict[str, Any] = {"model": df.model.iat[0], "dataset": dataset, "threat": threat, "rows": df}
    if threat == "corruptions":
        clean = df[(df.metric == "top1") & (df.condition == "clean")]
        out.update(
            eps=None,
            n=int(df[df.metric == "top1"].n.max()),
            clean_accuracy=float(clean.value.iat[0]) if len(clean) else float("nan"),
            robust_accuracy=value("mean_corruption_accuracy", r"summary/benchmark"),
        )
        return out
    out.update(
        eps=params["eps"],
        n=int(df[df.metric == "robust_accuracy"].n.max()),
        clean_accuracy=value("clean_accuracy"),
        robust_accuracy=value("robust_accuracy"),
    )
    return out
