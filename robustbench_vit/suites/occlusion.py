"""``occlusion``: random, salient and non-salient PatchDrop (Naseer et al. 2021, "Intriguing
Properties of Vision Transformers", NeurIPS; reference code Muzammal-Naseer/IPViT)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.perturbations.grid import cell_size
from robustbench_vit.perturbations.occlusion import (
    Fill,
    MaskMode,
    drop_count,
    random_patch_drop,
    saliency_patch_drop,
)
from robustbench_vit.suites._common import curve_auc, grid_label, mean_std, parse_grid
from robustbench_vit.suites.base import (
    AT_LEAST_ONE,
    UNIT,
    Condition,
    EvalContext,
    Result,
    Suite,
    register_suite,
)
from robustbench_vit.suites.saliency import SaliencyStore

__all__ = ["Occlusion"]

log = logging.getLogger(__name__)

Mode = Literal["random", "salient", "non_salient"]


@register_suite("occlusion")
@dataclass(frozen=True)
class Occlusion(Suite):
    """PatchDrop: accuracy as image cells are zeroed at random or by attention saliency.

    Parameters:
        modes: any of ``random``, ``salient`` (drop foreground), ``non_salient`` (keep only it).
        fractions: drop fractions for ``random`` (k = floor(fraction * cells)).
        grid: ``auto`` (default: cells of about 16 px that divide the input, the paper's 14 x 14 at 224 px;
            28 x 28 at 448, 40 x 40 of 15 px at 600), ``N`` (N x N cells), ``RxC``, or ``pixel``.
        fill: ``zero`` (paper), ``mean`` or ``noise``.
        mask_mode: ``batch`` (one mask per batch, paper) or ``image``.
        offset: shift the mask by half a cell (paper's offset grid).
        repeats: independent mask draws per fraction; rows per repeat plus mean/std summaries.
        lambdas: attention-mass fractions for the saliency modes.
        saliency_model: ViT with a CLS token that provides the saliency (default DINO ViT-S/16).
        head: attention head of the saliency model (IPViT uses 1), or ``mean``.
    """

    paper: ClassVar[str] = "Naseer et al. 2021, Intriguing Properties of Vision Transformers"
    #: 2: default grid ``auto`` (16 px cells at any input size); rows record the grid and cell size. 3: the
    #: salient/non-salient mask's float tolerance is relative to ``1 - lambda``, so ``lambda=1`` takes every
    #: cell with any attention, as IPViT does (an absolute 1e-7 left a peaked map's faintest cells out)
    version: ClassVar[int] = 3
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/random/fraction=0.5", "top1_mean"),
        ("summary/*/auc", "auc"),
    )

    modes: tuple[Mode, ...] = ("random",)
    fractions: tuple[Annotated[float, UNIT], ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    grid: str = "auto"
    fill: Fill = "zero"
    mask_mode: MaskMode = "batch"
    offset: bool = False
    repeats: Annotated[int, AT_LEAST_ONE] = 1
    lambdas: tuple[Annotated[float, UNIT], ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    saliency_model: str = "dino_s16"
    head: str = "1"

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError("repeats must be >= 1")
        for name, vals in (("fractions", self.fractions), ("lambdas", self.lambdas)):
            if not vals:
                raise ConfigError(f"occlusion {name} is empty")
            if any(not 0 <= v <= 1 for v in vals):
                raise ConfigError(f"occlusion {name} must lie in [0, 1], got {list(vals)}")
            if len({f"{v:.2f}" for v in vals}) != len(vals):
                raise ConfigError(f"occlusion {name} repeat a value (to 2 decimals): {list(vals)}")

    def is_clean_pass(self, cond: Condition) -> bool:
        return cond.params.get("mode") == "random" and cond.params.get("k") == 0  # no cell dropped

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        conds = []
        if "random" in self.modes:
            size = ctx.model.data_config.image_size
            g = parse_grid(self.grid, size)
            cell_size(*size, g)  # a non-dividing grid fails before any work
            cells = g[0] * g[1]
            for rep in range(self.repeats):
                for f in self.fractions:
                    params = {
                        "mode": "random",
                        "fraction": f,
                        "k": drop_count(f, cells),
                        "grid": grid_label(g),
                        "cell_px": grid_label(cell_size(*size, g)),
                        "fill": self.fill,
                        "mask_mode": self.mask_mode,
                        "offset": self.offset,
                        "repeat": rep,
                        "severity": f,
                    }
                    conds.append(Condition(f"random/fraction={f:.2f}/repeat={rep}", f, params))
        for mode in ("salient", "non_salient"):
            if mode in self.modes:
                for lam in self.lambdas:
                    params = {
                        "mode": mode,
                        "lambda": lam,
                        "saliency_model": self.saliency_model,
                        "head": self.head,
                        "fill": self.fill,
                        "severity": lam,
                    }
                    conds.append(Condition(f"{mode}/lambda={lam:.2f}", lam, params))
        return conds

    def referenced_models(self) -> dict[str, tuple[str, bool]]:
        salient = any(m != "random" for m in self.modes)
        return {"saliency_model": (self.saliency_model, True)} if salient else {}

    def prepare(self, ctx: EvalContext) -> None:
        if any(m != "random" for m in self.modes):
            own = self.saliency_model == ctx.model.spec.name  # the evaluated model ranks its own patches
            sal_model = ctx.model if own else self.load_referenced(ctx, "saliency_model")
            store = SaliencyStore.open(ctx, sal_model, self.head, self.code_key())
            store.ensure(ctx)
            ctx.state["saliency"] = store

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        p = cond.params
        if p["mode"] == "random":
            g = parse_grid(self.grid, ctx.model.data_config.image_size)
            return random_patch_drop(
                x,
                fraction=p["fraction"],
                grid=g,
                fill=self.fill,
                mask_mode=self.mask_mode,
                offset=self.offset,
                generator=generator,
            )
        sal = ctx.state["saliency"].maps(idx)
        return saliency_patch_drop(
            x, sal, mass=p["lambda"], salient=p["mode"] == "salient", fill=self.fill, generator=generator
        )

    def summarize(self, results: list[Result]) -> list[Result]:
        out: list[Result] = []
        if "random" in self.modes:
            out += mean_std(results, group_key="fraction", label="random")
            means = [(c.params["fraction"], mv.value, mv.n) for c, mv in out if mv.metric == "top1_mean"]
            if means:
                fr = [m[0] for m in means]
                auc = curve_auc(fr, [m[1] for m in means])
                out.append(
                    (
                        Condition("summary/random/auc", None, {"mode": "random", "fractions": fr}),
                        MetricValue("auc", auc, means[0][2]),
                    )
                )
        for mode in ("salient", "non_salient"):
            pts = [
                (c.params["lambda"], mv.value, mv.n)
                for c, mv in results
                if mv.metric == "top1" and c.params.get("mode") == mode
            ]
            if pts:
                auc = curve_auc([p[0] for p in pts], [p[1] for p in pts])
                out.append(
                    (
                        Condition(f"summary/{mode}/auc", None, {"mode": mode}),
                        MetricValue("auc", auc, pts[0][2]),
                    )
                )
        return out
