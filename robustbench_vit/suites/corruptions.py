"""``corruptions``: the 15 (+4) common corruptions x 5 severities applied on the fly to any dataset
(Hendrycks & Dietterich 2019), with our batched torch backend on the model's device or the
``imagecorruptions`` reference (CPU, per image).

Backend choice for the reference: ``imagecorruptions-imaug`` (the maintained fork, same import name
and API) is the declared dependency, because the original 1.1.2 breaks on glass_blur, gaussian_blur
and fog under numpy 2 / scikit-image 0.26 and needs pkg_resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.mce import BENCHMARK_CORRUPTIONS, SEVERITIES
from robustbench_vit.perturbations.corruptions import (
    ALL_CORRUPTIONS,
    TORCH_CORRUPTIONS,
    corrupt,
    reference_corrupt,
)
from robustbench_vit.suites.base import Condition, EvalContext, Suite, derive_seed, register_suite
from robustbench_vit.suites.imagenet_c import corruption_summary

__all__ = ["Corruptions"]

#: torch implementations whose output is random: validated in distribution, not pixel by pixel
STOCHASTIC = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


@register_suite("corruptions")
@dataclass(frozen=True)
class Corruptions(Suite):
    """Top-1 / error per (corruption, severity) under on-the-fly corruptions; mCE when all 15 x 5 are run.

    Parameters:
        corruptions: names (default the 15 benchmark corruptions; the 4 extra may be added).
        severities: subset of 1..5.
        backend: ``torch`` (batched, on the model's device) or ``imagecorruptions`` (reference).
        fallback: with ``torch``, run corruptions it lacks with the reference (recorded per row);
            ``false`` makes them an error.
    """

    paper: ClassVar[str] = "Hendrycks & Dietterich 2019 (ImageNet-C parameter tables, applied on the fly)"
    metrics: ClassVar[tuple[str, ...]] = ("top1", "error")
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/mce", "mce"), ("summary/relative_mce", "relative_mce"),
        ("summary/benchmark", "mean_corruption_accuracy"), ("summary/extra", "mean_corruption_accuracy"),
    )  # fmt: skip

    corruptions: tuple[str, ...] = BENCHMARK_CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    backend: str = "torch"
    fallback: bool = True

    def __post_init__(self) -> None:
        bad = [c for c in self.corruptions if c not in ALL_CORRUPTIONS]
        if bad:
            raise ConfigError(f"unknown corruptions {bad}; known: {', '.join(ALL_CORRUPTIONS)}")
        if self.backend not in ("torch", "imagecorruptions"):
            raise ConfigError(f"backend {self.backend!r} not in ('torch', 'imagecorruptions')")
        if any(s not in SEVERITIES for s in self.severities):
            raise ConfigError("severities must be within 1..5")
        missing = [c for c in self.corruptions if c not in TORCH_CORRUPTIONS]
        if self.backend == "torch" and missing and not self.fallback:  # noqa: SIM102
            raise ConfigError(f"the torch backend lacks {', '.join(missing)}; use -p fallback=true or backend=imagecorruptions")

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        size = ctx.model.data_config.image_size
        conds = []
        for c in self.corruptions:
            used = self.backend if c in TORCH_CORRUPTIONS else "imagecorruptions"
            for s in self.severities:
                params: dict[str, Any] = {"corruption": c, "severity": s, "backend": used,
                                          "validation": "distribution" if used == "torch" and c in STOCHASTIC else
                                          ("pixel" if used == "torch" else "reference"),
                                          "param_table": "imagenet"}  # fmt: skip
                if max(size) <= 64:
                    params["note"] = "ImageNet-C parameter tables on small images (CIFAR-10-C tables not yet included)"
                conds.append(Condition(f"{c}/{s}", float(s), params))
        return conds

    def perturb(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, cond: Condition,
                ctx: EvalContext, generator: torch.Generator) -> torch.Tensor:  # fmt: skip
        p = cond.params
        if p["backend"] == "torch":
            return corrupt(x, p["corruption"], p["severity"], generator=generator)
        seed = derive_seed(ctx.seed, "corruptions", cond.name, int(idx[0])) % 2**31
        return reference_corrupt(x, p["corruption"], p["severity"], seed=seed)

    def summarize(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return corruption_summary(rows)
