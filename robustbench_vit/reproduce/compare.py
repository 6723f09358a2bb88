"""Run a paper card's protocols through the normal runner and set each published value beside rbvit's.

A cell is *within* when ``|rbvit - published| <= tolerance``. On the card's own image set (same content
id, or, where the card records none, the same image count) the tolerance is the card's, with its reason;
on another image set (a subset, the shared samples) it widens to the 99% binomial half-width of rbvit's
image count and the row says so: the comparison is then a sanity check, not a reproduction.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from robustbench_vit.published.cards import PaperCard, Protocol, protocol_preprocessing

__all__ = ["plan", "reproduce", "COLUMNS", "estimate_minutes"]

COLUMNS = [
    "card", "protocol", "model", "suite", "condition", "metric", "published", "rbvit", "ci_low", "ci_high",
    "n", "difference", "tolerance", "same_image_set", "verdict", "reason", "source",
]  # fmt: skip


def _cells(card: PaperCard, models: list[str] | None) -> dict[str, list[Any]]:
    chosen = [c for c in card.cells if not models or c.model in models]
    by_protocol: dict[str, list[Any]] = {}
    for c in chosen:
        by_protocol.setdefault(c.protocol, []).append(c)
    return by_protocol


def _data_for(p: Protocol, data: dict[str, str], seen: dict[str, str | None]) -> str | None:
    """The folder a protocol runs on: ``--data PROTOCOL=PATH`` or ``--data DATASET=PATH`` (every protocol
    on that dataset), else the general ``--data PATH`` when it holds the protocol's dataset (a folder of
    wnid sub-folders cannot tell ImageNet-Sketch from val, so such a protocol needs a named ``--data``)."""
    named = data.get(p.id) or (data.get(p.dataset) if p.dataset else None)
    if named:
        return named
    folder = data.get("")
    if not folder or not p.dataset:
        return folder or None
    if folder not in seen:  # one listing per folder and call
        seen[folder] = _dataset_in(folder)
    return folder if seen[folder] == p.dataset else None


def _dataset_in(folder: str) -> str | None:
    """The dataset name ``--data folder`` resolves to (None when it does not open)."""
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.errors import RbvitError

    try:
        return open_dataset(folder)[0]
    except RbvitError:
        return None


#: forward-pass equivalents per image of a suite's default protocol (a rough count: AutoAttack standard's
#: APGD-CE, 9-target APGD-T and FAB-T at 100 iterations plus Square, mostly on the images still robust)
PASSES_PER_IMAGE = {
    "autoattack": 2000.0,
    "pgd": 30.0,
    "transfer": 30.0,
    "imagenet_c": 75.0,
    "corruptions": 75.0,
}


def estimate_minutes(params_m: float, images: int, suite: str = "clean") -> float:
    """A rough GPU time: about 0.2 GFLOPs per million parameters per forward at 224 px (ViT-B 17.6 GFLOPs /
    86 M, ResNet-50 4.1 / 26 M) at 50 TFLOP/s effective, times the suite's passes per image."""
    return images * PASSES_PER_IMAGE.get(suite, 1.0) * 0.2e9 * params_m / 5e13 / 60


def plan(card: PaperCard, models: list[str] | None, data: dict[str, str]) -> list[dict[str, Any]]:
    """What a run would do, per (protocol, model), and what it lacks (``--dry-run``)."""
    from robustbench_vit.models.names import resolve_spec
    from robustbench_vit.models.weights_status import weights_status

    rows = []
    seen: dict[str, str | None] = {}
    status: dict[str, str] = {}
    for pid, cells in _cells(card, models).items():
        p = card.protocols[pid]
        folder = _data_for(p, data, seen)
        for c in cells:
            spec = resolve_spec(c.model)
            if c.model not in status:
                status[c.model] = weights_status(spec)
            needs = [f"--data {p.dataset or pid}=PATH ({p.data})"] if not folder else []
            missing = "; ".join([*needs, *([f"weights {status[c.model]}"] if status[c.model] else [])])
            rows.append(
                {
                    "protocol": pid,
                    "model": c.model,
                    "suite": p.suite,
                    "images": p.image_set,
                    "data": folder or "",
                    "missing": missing,
                    "gpu_minutes": round(estimate_minutes(spec.params_m or 25.0, p.images, p.suite), 2),
                }
            )
    return rows


def reproduce(
    card: PaperCard, *, models: list[str] | None = None, data: dict[str, str] | None = None, **kwargs: Any
) -> pd.DataFrame:
    """Run every protocol of ``card`` that has data, for ``models`` (default: every model of the card), and
    return one comparison row per published cell that ran (:data:`COLUMNS`)."""
    from robustbench_vit.api import evaluate
    from robustbench_vit.metrics.statistics import wilson_interval
    from robustbench_vit.suites import make_suite

    data = data or {}
    seen: dict[str, str | None] = {}
    out = []
    runs: dict[str, pd.DataFrame] = {}  # one evaluation per (model, suite, parameters, images, preprocessing)
    for pid, cells in _cells(card, models).items():
        p = card.protocols[pid]
        folder = _data_for(p, data, seen)
        if folder is None:
            continue
        for c in cells:
            pre = protocol_preprocessing(p.preprocessing, c.model)
            key = json.dumps([c.model, p.suite, p.params, folder, p.subset, p.dataset, pre], sort_keys=True)
            if key not in runs:
                runs[key] = evaluate(
                    c.model,
                    make_suite(p.suite, p.params),
                    data=folder,
                    dataset=p.dataset or None,
                    subset=p.subset or None,
                    override_preprocessing=pre,
                    **kwargs,
                )
            df = runs[key]
            row = df[(df.condition == p.condition) & (df.metric == p.metric)]
            if row.empty:
                continue
            value, n = float(row.value.iat[0]), int(row.n.iat[0])
            image_set = str(row.image_set.iat[0]) if "image_set" in row else ""
            same = image_set == p.image_set_id if p.image_set_id else n == p.images
            tol = p.tolerance if same else max(p.tolerance, 2.576 * math.sqrt(c.value * (1 - c.value) / n))
            lo, hi = wilson_interval(value, n)
            reason = (
                p.reason
                if same
                else f"other images than {p.image_set}: 99% binomial half-width of {n} images"
            )
            out.append(
                {
                    "card": card.name,
                    "protocol": pid,
                    "model": c.model,
                    "suite": p.suite,
                    "condition": p.condition,
                    "metric": p.metric,
                    "published": c.value,
                    "rbvit": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "difference": value - c.value,
                    "tolerance": tol,
                    "same_image_set": same,
                    "verdict": "within" if abs(value - c.value) <= tol + 1e-12 else "outside",
                    "reason": reason,
                    "source": p.source or card.citation,  # where the published value was read
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)
