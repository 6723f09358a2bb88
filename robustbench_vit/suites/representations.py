"""``representations``: how a network represents images, not how robust it is.

* ``cka``: linear minibatch CKA (Nguyen et al. 2021, unbiased HSIC) between every pair of layers of the
  model, or between its layers and those of ``compare_with`` on the same images (Raghu et al. 2021,
  "Do Vision Transformers See Like Convolutional Neural Networks?"). Rows ``cka`` per (layer_a, layer_b).
* ``attention_distance``: mean attention distance in input pixels per block and head (Dosovitskiy et al.
  2021, Fig. 7; Raghu et al. 2021), for transformers with standard qkv attention.
* ``block_accuracy``: top-1 of every block's class token through the final norm and head (Naseer et al.
  2022, "On Improving Adversarial Transferability of Vision Transformers", Fig. 1).

Analyses a model cannot have (attention on a CNN) are skipped with a log line.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import (
    ClassificationAccumulator,
    MetricValue,
    PrecomputedResults,
    register_metric,
)
from robustbench_vit.metrics.cka import MinibatchCKA
from robustbench_vit.models import probes
from robustbench_vit.suites.base import Condition, EvalContext, Result, Suite, register_suite

__all__ = ["Representations"]

log = logging.getLogger(__name__)

for _name, _desc in (
    ("cka", "linear minibatch CKA between two layers' representations (not a ranking)"),
    ("cka_adjacent_mean", "mean CKA between consecutive layers (not a ranking)"),
    ("attention_distance", "mean attention distance in input pixels (not a ranking)"),
    ("attention_distance_mean", "attention distance averaged over heads (not a ranking)"),
):
    register_metric(_name, higher_is_better=True, proportion=False, description=_desc)

Analysis = Literal["cka", "attention_distance", "block_accuracy"]


def _has_attention(ctx: EvalContext) -> bool:
    try:
        probes._transformer(ctx.model)
    except ConfigError:
        return False
    return hasattr(ctx.model.net, "patch_embed")


@register_suite("representations")
@dataclass(frozen=True)
class Representations(Suite):
    """CKA between layers, attention distance per head, class-token accuracy per block.

    Parameters:
        analyses: any of ``cka``, ``attention_distance``, ``block_accuracy`` (default all that apply).
        layers: module names to compare (default: the model's blocks, see ``models/probes.py``).
        compare_with: a second model reference; CKA is then between the two models' layers (its input is
            the same images, resized to its input size when that differs).
        compare_layers: the second model's layers (default: its blocks).
    """

    paper: ClassVar[str] = (
        "Raghu et al. 2021 (CKA, attention distance); Nguyen et al. 2021 (minibatch CKA); "
        "Naseer et al. 2022 (class token per block)"
    )
    metrics: ClassVar[tuple[str, ...]] = ("cka",)
    calibration: ClassVar[tuple[str, ...]] = ()
    needs_labels: ClassVar[bool] = False  # CKA and attention distance; block_accuracy only with a classifier
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/cka", "cka_adjacent_mean"),
        ("summary/attention_distance/first", "attention_distance_mean"),
        ("summary/attention_distance/last", "attention_distance_mean"),
        ("summary/block_accuracy/last", "top1"),
    )

    analyses: tuple[Analysis, ...] = ("cka", "attention_distance", "block_accuracy")
    layers: tuple[str, ...] = ()
    compare_with: str = ""
    compare_layers: tuple[str, ...] = ()

    def referenced_models(self) -> dict[str, tuple[str, bool]]:
        return {"compare_with": (self.compare_with, True)} if self.compare_with else {}

    def _other(self, ctx: EvalContext):  # type: ignore[no-untyped-def]
        if not self.compare_with:
            return None
        if "other" not in ctx.state:
            ctx.state["other"] = self.load_referenced(ctx, "compare_with")
        return ctx.state["other"]

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        conds = []
        if "cka" in self.analyses:
            layers = probes.check_layers(ctx.model.net, self.layers)
            params = {"layers": layers, "kernel": "linear", "estimator": "minibatch unbiased HSIC"}
            other = self._other(ctx)
            if other is not None:
                params["model_b"] = other.spec.name
                params["layers_b"] = probes.check_layers(other.net, self.compare_layers)
            conds.append(Condition("cka" if other is None else f"cka/vs={other.spec.name}", None, params))
        attention = _has_attention(ctx)
        for what in ("attention_distance", "block_accuracy"):
            if what not in self.analyses:
                continue
            if what == "block_accuracy" and ctx.model.label_space.name == "none":
                log.info("block_accuracy skipped: %s has no classifier", ctx.model.spec.name)
            elif attention:
                conds.append(Condition(what, None, {}))
            else:
                log.info(
                    "%s skipped: %s has no transformer blocks with qkv attention", what, ctx.model.spec.name
                )
        if not conds:
            raise ConfigError(
                f"representations: none of {', '.join(self.analyses)} applies to {ctx.model.spec.name}"
            )
        return conds

    def _run(
        self, ctx: EvalContext, cond: Condition, bs: int
    ) -> list[tuple[Condition, ClassificationAccumulator]]:
        run = {"cka": self._cka, "attention_distance": self._attention, "block_accuracy": self._blocks}
        return [(cond, PrecomputedResults(run[cond.name.split("/")[0]](ctx, cond, bs)))]

    # --- analyses -------------------------------------------------------------------------------------
    def _cka(self, ctx: EvalContext, cond: Condition, bs: int) -> list[Result]:
        p = cond.params
        la = list(p["layers"])
        other = self._other(ctx)
        lb = list(p.get("layers_b", la))
        acc = MinibatchCKA()
        for x, _y, idx in ctx.batches(bs):
            fa, _ = probes.layer_outputs(ctx.model, x, la)
            fb = None
            if other is not None:
                fb, _ = probes.layer_outputs(other, probes.resize_to(x, other.data_config.image_size), lb)
            acc.update(fa, fb)
            if ctx.on_batch:
                ctx.on_batch(len(idx))
        if acc.batches == 0:
            raise ConfigError("CKA needs batches of at least 4 images (raise --batch-size or --limit)")
        cka = acc.result()
        model_b = p.get("model_b", ctx.model.spec.name)
        out = []
        for i, a in enumerate(la):
            for j, b in enumerate(lb):
                params = {
                    "layer_a": a,
                    "layer_b": b,
                    "index_a": i,
                    "index_b": j,
                    "depth_a": probes.depth_fraction(i, len(la)),
                    "depth_b": probes.depth_fraction(j, len(lb)),
                    "model_b": model_b,
                    "batches": acc.batches,
                    "batch_size": bs,
                }
                c = Condition(f"{cond.name}/{a}|{b}", None, params)
                out.append((c, MetricValue("cka", float(cka[i, j]), acc.n)))
        return out

    def _attention(self, ctx: EvalContext, cond: Condition, bs: int) -> list[Result]:
        total, n = None, 0
        for x, _y, idx in ctx.batches(bs):
            d = probes.mean_attention_distance(ctx.model, probes.attention_weights(ctx.model, x))
            total = d if total is None else total + d
            n += len(idx)
            if ctx.on_batch:
                ctx.on_batch(len(idx))
        dist = (total / n).numpy()  # type: ignore[operator]
        out = []
        for b in range(dist.shape[0]):
            for h in range(dist.shape[1]):
                c = Condition(
                    f"attention_distance/block={b}/head={h}",
                    float(b),
                    {"block": b, "head": h, "depth": probes.depth_fraction(b, dist.shape[0]), "unit": "px"},
                )
                out.append((c, MetricValue("attention_distance", float(dist[b, h]), n)))
        return out

    def _blocks(self, ctx: EvalContext, cond: Condition, bs: int) -> list[Result]:
        accs: list[ClassificationAccumulator] = []
        for x, y, idx in ctx.batches(bs):
            per_block = probes.block_logits(ctx.model, x)
            if not accs:
                accs = [ClassificationAccumulator() for _ in per_block]
            for acc, logits in zip(accs, per_block):
                acc.update(logits, y, idx)
            if ctx.on_batch:
                ctx.on_batch(len(idx))
        out = []
        for b, acc in enumerate(accs):
            c = Condition(
                f"block_accuracy/block={b}",
                float(b),
                {"block": b, "depth": probes.depth_fraction(b, len(accs))},
            )
            out += [(c, mv) for mv in acc.results(("top1", "top5"))]
        return out

    def summarize(self, results: list[Result]) -> list[Result]:
        out: list[Result] = []
        # consecutive layers of the model itself (not of a comparison with another model)
        adjacent = [
            mv.value
            for c, mv in results
            if mv.metric == "cka"
            and not c.name.startswith("cka/vs=")
            and c.params["index_b"] == c.params["index_a"] + 1
        ]
        if adjacent:
            n = next(mv.n for _, mv in results if mv.metric == "cka")
            mean = MetricValue("cka_adjacent_mean", float(np.mean(adjacent)), n)
            out.append((Condition("summary/cka", None, {"pairs": len(adjacent)}), mean))
        by_block: dict[int, list[MetricValue]] = defaultdict(list)
        for c, mv in results:
            if mv.metric == "attention_distance":
                by_block[int(c.params["block"])].append(mv)
        if by_block:
            for label, b in (("first", min(by_block)), ("last", max(by_block))):
                vals = by_block[b]
                mv = MetricValue(
                    "attention_distance_mean", float(np.mean([v.value for v in vals])), vals[0].n
                )
                out.append((Condition(f"summary/attention_distance/{label}", float(b), {"block": b}), mv))
        blocks = [
            (c, mv) for c, mv in results if mv.metric == "top1" and c.name.startswith("block_accuracy/")
        ]
        if blocks:
            c, mv = max(blocks, key=lambda r: r[0].params["block"])
            out.append((Condition("summary/block_accuracy/last", c.severity, dict(c.params)), mv))
        return out
