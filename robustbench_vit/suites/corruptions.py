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
from robustbench_vit.perturbations.corruptions import ALL_CORRUPTIONS, TABLES, corrupt, reference_corrupt
from robustbench_vit.suites.base import Condition, EvalContext, Suite, derive_seed, register_suite
from robustbench_vit.suites.imagenet_c import corruption_summary

__all__ = ["Corruptions", "validation_of"]

#: how each torch implementation is validated against the reference (tests/test_corruptions*.py)
_GIVEN_DRAWS = ("glass_blur", "motion_blur", "snow", "spatter", "elastic_transform", "fog", "frost")
_DISTRIBUTION = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
#: make_cifar_c blurs these with ImageMagick; we use imagecorruptions' kernel (same radius/sigma meaning)
_CIFAR_APPROXIMATE = ("motion_blur", "snow")


def validation_of(corruption: str, backend: str, table: str) -> str:
    """The row label saying how far a (corruption, backend, table) cell is checked against the reference."""
    if backend == "imagecorruptions":
        return "reference"
    if table == "cifar10":
        return "approximate" if corruption in _CIFAR_APPROXIMATE else "formula"
    if corruption in _GIVEN_DRAWS:
        return "pixel-given-draws"
    return "distribution" if corruption in _DISTRIBUTION else "pixel"


@register_suite("corruptions")
@dataclass(frozen=True)
class Corruptions(Suite):
    """Top-1 / error per (corruption, severity) under on-the-fly corruptions; mCE when all 15 x 5 are run.

    Parameters:
        corruptions: names (default the 15 benchmark corruptions; the 4 extra may be added).
        severities: subset of 1..5.
        backend: ``torch`` (batched, on the model's device) or ``imagecorruptions`` (reference, CPU).
        table: ``imagenet`` (ImageNet-C tables), ``cifar10`` (CIFAR-10-C tables, torch backend only) or
            ``auto``: ``cifar10`` when the model input is at most 32 px, else ``imagenet``.
    """

    #: 2: all 19 corruptions in the torch backend, CIFAR-10-C tables (``table``), no reference fallback
    version: ClassVar[int] = 2
    paper: ClassVar[str] = "Hendrycks & Dietterich 2019 (ImageNet-C / CIFAR-10-C parameter tables, applied on the fly)"
    metrics: ClassVar[tuple[str, ...]] = ("top1", "error")
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/mce", "mce"), ("summary/relative_mce", "relative_mce"),
        ("summary/benchmark", "mean_corruption_accuracy"), ("summary/extra", "mean_corruption_accuracy"),
    )  # fmt: skip

    corruptions: tuple[str, ...] = BENCHMARK_CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    backend: str = "torch"
    table: str = "auto"

    def __post_init__(self) -> None:
        bad = [c for c in self.corruptions if c not in ALL_CORRUPTIONS]
        if bad:
            raise ConfigError(f"unknown corruptions {bad}; known: {', '.join(ALL_CORRUPTIONS)}")
        if self.backend not in ("torch", "imagecorruptions"):
            raise ConfigError(f"backend {self.backend!r} not in ('torch', 'imagecorruptions')")
        if self.table not in ("auto", *TABLES):
            raise ConfigError(f"table {self.table!r} not in ('auto', {', '.join(map(repr, TABLES))})")
        if self.backend == "imagecorruptions" and self.table == "cifar10":
            raise ConfigError("the imagecorruptions reference has only the ImageNet tables; use -p backend=torch for table=cifar10")
        if any(s not in SEVERITIES for s in self.severities):
            raise ConfigError("severities must be within 1..5")

    def resolved_table(self, image_size: tuple[int, int]) -> str:
        if self.table != "auto":
            return self.table
        return "cifar10" if max(image_size) <= 32 and self.backend == "torch" else "imagenet"

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        table = self.resolved_table(ctx.model.data_config.image_size)
        conds = []
        for c in self.corruptions:
            for s in self.severities:
                params: dict[str, Any] = {"corruption": c, "severity": s, "backend": self.backend, "param_table": table,
                                          "validation": validation_of(c, self.backend, table)}  # fmt: skip
                conds.append(Condition(f"{c}/{s}", float(s), params))
        return conds

    def perturb(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, cond: Condition,
                ctx: EvalContext, generator: torch.Generator) -> torch.Tensor:  # fmt: skip
        p = cond.params
        if p["backend"] == "torch":
            return corrupt(x, p["corruption"], p["severity"], generator=generator, table=p["param_table"])
        seed = derive_seed(ctx.seed, "corruptions", cond.name, int(idx[0])) % 2**31
        return reference_corrupt(x, p["corruption"], p["severity"], seed=seed)

    def summarize(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return corruption_summary(rows)
