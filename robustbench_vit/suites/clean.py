"""``clean``: accuracy and calibration on unperturbed images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from robustbench_vit.suites.base import Condition, EvalContext, Suite, register_suite

__all__ = ["Clean"]


@register_suite("clean")
@dataclass(frozen=True)
class Clean(Suite):
    """Top-1, top-5, negative log-likelihood and expected calibration error (15 bins, Guo et al. 2017)."""

    paper: ClassVar[str] = "standard evaluation; ECE after Guo et al. 2017"
    metrics: ClassVar[tuple[str, ...]] = ("top1", "top5", "nll", "ece")
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("*", "top1"),
        ("*", "top5"),
        ("*", "nll"),
        ("*", "ece"),
    )

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        return [Condition("clean")]

    def is_clean_pass(self, cond: Condition) -> bool:
        return True
