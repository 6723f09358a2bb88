"""``patch_shuffle``: accuracy when an image's grid of patches is permuted (Naseer et al. 2021, Sec. 3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.occlusion import MaskMode
from robustbench_vit.perturbations.patch_shuffle import patch_shuffle
from robustbench_vit.suites._common import grid_label, mean_std, parse_grid
from robustbench_vit.suites.base import AT_LEAST_ONE, Condition, EvalContext, Result, Suite, register_suite

__all__ = ["PatchShuffle"]


@register_suite("patch_shuffle")
@dataclass(frozen=True)
class PatchShuffle(Suite):
    """Shuffle the image's grid of patches; grid 1 is the unshuffled baseline.

    Parameters:
        grids: ``N``, ``RxC`` or ``auto`` grids (default 1, 2, 2x4, 4, 4x8, 8 and ``auto``: cells of about
            16 px that divide the input, 14 x 14 at 224 px; every default divides 160, 224, 448 and 600 px).
        mask_mode: ``batch`` (one permutation per batch, paper) or ``image``.
        crop: shuffle the largest divisible region instead of rejecting non-dividing grids.
        repeats: independent permutations per grid; mean/std summaries over them.
    """

    paper: ClassVar[str] = "Naseer et al. 2021, Intriguing Properties of Vision Transformers"
    headline: ClassVar[tuple[tuple[str, str], ...]] = (("summary/grid=*", "top1_mean"),)
    #: 2: default grids 1, 2, 2x4, 4, 4x8, 8, auto (16 px cells) instead of fixed 14 and 16
    version: ClassVar[int] = 2

    grids: tuple[str, ...] = ("1", "2", "2x4", "4", "4x8", "8", "auto")
    mask_mode: MaskMode = "batch"
    crop: bool = False
    repeats: Annotated[int, AT_LEAST_ONE] = 1

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError("repeats must be >= 1")

    def is_clean_pass(self, cond: Condition) -> bool:
        return cond.params.get("patches") == 1 and not cond.params.get("crop")  # one patch: nothing moves

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        h, w = ctx.model.data_config.image_size
        resolved: dict[tuple[int, int], str] = {}
        for spec in self.grids:  # ``auto`` may resolve to a grid listed explicitly: evaluate it once
            resolved.setdefault(parse_grid(spec, (h, w)), spec)
        grids = list(resolved)
        bad = [grid_label(g) for g in grids if not self.crop and (h % g[0] or w % g[1])]
        if bad:
            raise ConfigError(
                f"patch_shuffle grids {', '.join(bad)} do not divide the {h}x{w} input; "
                f"pass -p grids=... with divisors of {h} and {w}, or -p crop=true"
            )
        conds = []
        for rep in range(self.repeats):
            for g, spec in resolved.items():
                n = g[0] * g[1]
                params = {
                    "grid": grid_label(g),
                    "patches": n,
                    "grid_spec": spec,
                    "mask_mode": self.mask_mode,
                    "crop": self.crop,
                    "repeat": rep,
                    "severity": n,
                }
                conds.append(Condition(f"grid={grid_label(g)}/repeat={rep}", float(n), params))
        return conds

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        g = tuple(int(v) for v in cond.params["grid"].split("x"))
        return patch_shuffle(x, grid=g, mask_mode=self.mask_mode, crop=self.crop, generator=generator)

    def summarize(self, results: list[Result]) -> list[Result]:
        return mean_std(results, group_key="grid")
