"""Fourier suites: the Fourier heat map (Yin et al. 2019, "A Fourier Perspective on Model Robustness
in Computer Vision", NeurIPS) and low/high-pass filtering (Paul & Chen 2022, "Vision Transformers
are Robust Learners", AAAI; Wang et al. 2020, "High-Frequency Component Helps Explain the
Generalization of CNNs")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.perturbations.fourier import (
    FilterKind,
    fourier_basis,
    fourier_noise,
    frequency_filter,
    half_plane_frequencies,
)
from robustbench_vit.suites._common import curve_auc
from robustbench_vit.suites.base import (
    AT_LEAST_ONE,
    POSITIVE,
    Condition,
    EvalContext,
    Range,
    Result,
    Suite,
    register_suite,
)

__all__ = ["FourierHeatmap", "FourierFilter", "default_eps", "default_radius"]


def default_eps(size: tuple[int, int]) -> float:
    """Yin et al.'s published norms, 4.0 at 32x32 (CIFAR) and 15.7 at 224x224 (ImageNet), scaled with the
    image side (sqrt(H*W)): a unit-L2 Fourier basis has per-pixel amplitude ~1/side, so eps * side / 224
    keeps the per-pixel perturbation of the paper at any resolution (at 384 px an unscaled 15.7 would be
    0.58x as strong). Inputs up to 64 px follow the CIFAR figure (4.0 * side / 32)."""
    side = math.sqrt(size[0] * size[1])
    return 4.0 * side / 32 if max(size) <= 64 else 15.7 * side / 224


def default_radius(size: tuple[int, int]) -> int:
    """31x31 map at 32 px (all frequencies but Nyquist), the central 63x63 at ImageNet sizes."""
    return min(min(size) // 2 - 1, 31)


@register_suite("fourier_heatmap")
@dataclass(frozen=True)
class FourierHeatmap(Suite):
    """Error under additive Fourier-basis noise x + eps * r * U_ij for every frequency (i, j).

    Parameters:
        eps: L2 norm of the noise per channel (default 4.0 at 32 px, 15.7 at 224 px, as published, scaled by
            side / 32 or side / 224 at other sizes; rows record the value used as ``eps`` and ``eps_scaled``).
        radius: map covers frequencies in [-radius, radius]^2 (default 15 at 32 px -> 31x31; 31 -> 63x63).
        stride: evaluate every stride-th frequency (coarser, cheaper maps).
        bases_per_pass: bases evaluated together in one forward pass (batch = images x bases).
        clamp: clip perturbed images to [0, 1] (paper protocol).
    """

    #: 2: default eps scaled with the image side (15.7 * side / 224), recorded with ``eps_scaled``
    version: ClassVar[int] = 2
    paper: ClassVar[str] = "Yin et al. 2019, A Fourier Perspective on Model Robustness in Computer Vision"
    metrics: ClassVar[tuple[str, ...]] = ("error",)
    #: a heat map is an error map over hundreds of bases (the paper's protocol); no calibration rows per basis
    calibration: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/fourier", "error_high_freq"),
        ("summary/fourier", "error_low_freq"),
        ("summary/fourier", "error_mean"),
    )

    eps: Annotated[float, POSITIVE] | None = None
    radius: Annotated[int, AT_LEAST_ONE] | None = None
    stride: Annotated[int, AT_LEAST_ONE] = 1
    bases_per_pass: Annotated[int, AT_LEAST_ONE] = 16
    clamp: bool = True

    def _setup(self, ctx: EvalContext) -> tuple[float, int]:
        size = ctx.model.data_config.image_size
        eps = self.eps if self.eps is not None else default_eps(size)
        r = self.radius if self.radius is not None else default_radius(size)
        if r > min(size) // 2 - 1 and r != min(size) // 2:
            raise ConfigError(
                f"fourier radius {r} exceeds the {size[0]}x{size[1]} spectrum (max {min(size) // 2 - 1})"
            )
        return eps, r

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        eps, r = self._setup(ctx)
        freqs = half_plane_frequencies(r, self.stride)
        k = max(1, self.bases_per_pass)
        conds = []
        for s in range(0, len(freqs), k):
            chunk = freqs[s : s + k]
            params = {
                "freqs": chunk,
                "eps": eps,
                "eps_scaled": self.eps is None,
                "radius": r,
                "stride": self.stride,
            }
            conds.append(
                Condition(f"bases/{chunk[0][0]},{chunk[0][1]}..{chunk[-1][0]},{chunk[-1][1]}", None, params)
            )
        return conds

    def variants(self, cond: Condition) -> list[Condition]:
        p = cond.params
        return [
            Condition(
                f"freq=({u},{v})",
                float(math.hypot(u, v)),
                {
                    "u": u,
                    "v": v,
                    "eps": p["eps"],
                    "eps_scaled": p["eps_scaled"],
                    "radius": p["radius"],
                    "stride": p["stride"],
                },
            )
            for u, v in p["freqs"]
        ]

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        key = ("basis", cond.name)
        if key not in ctx.state:
            if len(ctx.state) > 64:  # bases of finished conditions are not needed again
                ctx.state.clear()
            ctx.state[key] = fourier_basis(cond.params["freqs"], x.shape[-2:], device=x.device)
        return fourier_noise(x, ctx.state[key], eps=cond.params["eps"], generator=generator, clamp=self.clamp)

    def expand_results(self, results: list[Result]) -> list[Result]:
        """U_(-u,-v) = U_(u,v): the mirrored frequency's result is the evaluated one's."""
        out: list[Result] = []
        for cond, mv in results:
            p = cond.params
            if (p["u"], p["v"]) != (0, 0):
                q = {**p, "u": -p["u"], "v": -p["v"], "mirror_of": f"({p['u']},{p['v']})"}
                out.append((Condition(f"freq=({-p['u']},{-p['v']})", cond.severity, q), mv))
        return out

    def summarize(self, results: list[Result]) -> list[Result]:
        pts = [(c.params, mv.value, mv.n) for c, mv in results if mv.metric == "error"]
        if not pts:
            return []
        radius = pts[0][0]["radius"]
        d = np.asarray([math.hypot(p["u"], p["v"]) for p, _, _ in pts])
        e = np.asarray([v for _, v, _ in pts])
        n = pts[0][2]
        cond = Condition(
            "summary/fourier", None, {"eps": pts[0][0]["eps"], "radius": radius, "split": radius / 2}
        )
        high = float(e[d > radius / 2].mean()) if (d > radius / 2).any() else float("nan")
        return [
            (cond, MetricValue("error_mean", float(e.mean()), n)),
            (cond, MetricValue("error_low_freq", float(e[d <= radius / 2].mean()), n)),
            (cond, MetricValue("error_high_freq", high, n)),
        ]


@register_suite("fourier_filter")
@dataclass(frozen=True)
class FourierFilter(Suite):
    """Accuracy on low-pass / high-pass (band-pass / band-stop) filtered images.

    Parameters:
        kinds: any of ``low`` (keep distance < r from DC), ``high`` (keep >= r), ``band_pass``,
            ``band_stop`` (r <= d < r + band_width).
        radius_fractions: radii as fractions of the Nyquist radius min(H, W) / 2.
        band_width: band width for band filters, as a fraction of the Nyquist radius.
        soft: Gaussian masks instead of hard cut-offs.
    """

    paper: ClassVar[str] = (
        "Paul & Chen 2022, Vision Transformers are Robust Learners (after Wang et al. 2020)"
    )
    #: the board ranks by the low-pass curve's area (robustness to losing high frequencies), then shows each
    #: kind's curve in radius order
    headline: ClassVar[tuple[tuple[str, str], ...]] = tuple(
        pair
        for kind in ("low", "high", "band_pass", "band_stop")
        for pair in ((f"summary/{kind}/auc", "auc"), (f"{kind}/r=*", "top1"))
    )

    kinds: tuple[FilterKind, ...] = ("low", "high")
    radius_fractions: tuple[Annotated[float, Range(0, 2, lo_open=True)], ...] = (
        0.0625,
        0.125,
        0.25,
        0.5,
        0.75,
        1.0,
    )
    band_width: Annotated[float, POSITIVE] = 0.125
    soft: bool = False

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        nyq = min(ctx.model.data_config.image_size) / 2
        conds = []
        for kind in self.kinds:
            for f in self.radius_fractions:
                r = f * nyq
                p = {"kind": kind, "radius": r, "radius_fraction": f, "soft": self.soft}
                if kind.startswith("band"):
                    p["radius2"] = r + self.band_width * nyq
                conds.append(Condition(f"{kind}/r={f:g}", f, p))
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
        p = cond.params
        return frequency_filter(
            x, kind=p["kind"], radius=p["radius"], radius2=p.get("radius2"), soft=p["soft"]
        )

    def summarize(self, results: list[Result]) -> list[Result]:
        """Per kind, the normalised area under top-1 vs radius fraction (trapezoid rule over the radii run,
        divided by their span; the mean when one radius was run), as ``summary/<kind>/auc``."""
        out: list[Result] = []
        for kind in self.kinds:
            pts = [
                (c.params["radius_fraction"], mv.value, mv.n)
                for c, mv in results
                if mv.metric == "top1" and c.params.get("kind") == kind
            ]
            if pts:
                fractions = sorted(p[0] for p in pts)
                cond = Condition(f"summary/{kind}/auc", None, {"kind": kind, "radius_fractions": fractions})
                out.append(
                    (cond, MetricValue("auc", curve_auc([p[0] for p in pts], [p[1] for p in pts]), pts[0][2]))
                )
        return out
