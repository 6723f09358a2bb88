"""``imagenet_c``: ImageNet-C from its files (Hendrycks & Dietterich 2019, ICLR).

Layout ``<root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG``. Rows per (corruption, severity): top-1
and error; aggregates: mean corruption accuracy, CE per corruption, mCE (needs all 15 benchmark
corruptions x 5 severities, else it is not reported and the log says what is missing) and, when
``clean_data`` is given, relative mCE. The 4 extra corruptions are reported separately.

``preprocessing``: ``crop`` (default; center-crop the 224 px files to the model input, as the
benchmark's reference code), ``resize`` (resize to the input size, as RobustBench), or ``model``
(the model's own resize + crop).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from robustbench_vit.data.datasets import image_folder
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.data.subset import LIMIT_SEED, stratified_limit
from robustbench_vit.errors import DataError
from robustbench_vit.metrics.mce import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_HEADLINE,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.perturbations.corruptions.tables import CorruptionName
from robustbench_vit.suites.base import (
    Condition,
    ConditionData,
    EvalContext,
    Result,
    Suite,
    register_suite,
)
from robustbench_vit.suites.corruption_summary import corruption_summary

__all__ = ["ImageNetC", "find_corruption_folders"]

log = logging.getLogger(__name__)

Preprocessing = Literal["crop", "resize", "model"]


def find_corruption_folders(root: Path) -> dict[tuple[str, int], Path]:
    """Every ``<root>/<corruption>/<severity>`` folder of a known corruption."""
    found = {}
    for c in (*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS):
        for s in SEVERITIES:
            p = root / c / str(s)
            if p.is_dir():
                found[(c, s)] = p
    return found


def unread_folders(root: Path) -> list[str]:
    """Folders under an ImageNet-C root that no condition reads: a name that is no corruption (``Fog``,
    ``glass-blur``) or a severity outside 1-5 (``fog/6``); hidden folders are left out."""
    known, severities = {*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS}, {str(s) for s in SEVERITIES}
    out = []
    for p in sorted(q for q in root.iterdir() if q.is_dir() and not q.name.startswith(".")):
        if p.name not in known:
            out.append(p.name)
            continue
        out += [
            f"{p.name}/{q.name}"
            for q in sorted(p.iterdir())
            if q.is_dir() and not q.name.startswith(".") and q.name not in severities
        ]
    return out


@register_suite("imagenet_c")
@dataclass(frozen=True)
class ImageNetC(Suite):
    """Top-1 and error per (corruption, severity) on the ImageNet-C files; mCE and relative mCE.

    Parameters:
        corruptions: subset to evaluate (default: every corruption folder found).
        preprocessing: ``crop`` (default), ``resize`` or ``model``.
        clean_data: ImageNet val folder; adds the clean error needed for relative mCE.
    """

    paper: ClassVar[str] = (
        "Hendrycks & Dietterich 2019, Benchmarking Neural Network Robustness to Common Corruptions"
    )
    metrics: ClassVar[tuple[str, ...]] = ("top1", "error")
    headline: ClassVar[tuple[tuple[str, str], ...]] = CORRUPTION_HEADLINE
    uses_run_cache: ClassVar[bool] = False  # each (corruption, severity) folder is cached on its own

    corruptions: tuple[CorruptionName, ...] = ()
    preprocessing: Preprocessing = "crop"
    clean_data: str = ""

    def _folders(self, root: Path) -> dict[tuple[str, int], Path]:
        found = find_corruption_folders(root)
        if self.corruptions:
            found = {k: v for k, v in found.items() if k[0] in self.corruptions}
        if not found:
            raise DataError(f"{root} holds no ImageNet-C folders (<root>/<corruption>/<1-5>/<wnid>/*.JPEG)")
        return found

    def open_data(self, data, dataset, labels):  # type: ignore[no-untyped-def]
        self.refuse_labels_file(labels)
        if data is None:
            raise DataError(
                "imagenet_c needs --data PATH to the ImageNet-C root (<root>/<corruption>/<1-5>/<wnid>/)"
            )
        root = Path(data).expanduser()
        if not root.is_dir():
            raise DataError(f"data folder not found: {root}")
        folders = self._folders(root)
        if unread := unread_folders(root):  # a misspelt corruption is never silently left out of a table
            log.warning(
                "%s: %d folders are no ImageNet-C corruption/severity (1-5) and are not evaluated: %s",
                root,
                len(unread),
                ", ".join(unread[:8]) + (" ..." if len(unread) > 8 else ""),
            )
        first = folders[sorted(folders)[0]]
        ds = image_folder(first)
        h = hashlib.sha256(ds.fingerprint.encode())
        for k in sorted(folders):
            h.update(f"{k}".encode())
        ds = dataclasses.replace(ds, root=root, fingerprint=h.hexdigest()[:16])
        return "imagenet-c", ds

    def data_config(self, model: LoadedModel) -> DataConfig:
        dc = model.data_config
        if self.preprocessing == "crop":
            return dc.replace(crop_pct=1.0, crop_mode="center", source=f"{dc.source}; imagenet_c center-crop")
        if self.preprocessing == "resize":
            return dc.replace(crop_pct=1.0, crop_mode="squash", source=f"{dc.source}; imagenet_c resize")
        return dc

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        conds = []
        for c, s in sorted(
            self._folders(ctx.dataset.root), key=lambda k: (k[0] not in BENCHMARK_CORRUPTIONS, k)
        ):
            conds.append(
                Condition(
                    f"{c}/{s}",
                    float(s),
                    {
                        "corruption": c,
                        "severity": s,
                        "benchmark": c in BENCHMARK_CORRUPTIONS,
                        "preprocessing": self.preprocessing,
                    },
                )
            )
        if self.clean_data:
            conds.append(
                Condition(
                    "clean",
                    0.0,
                    {
                        "corruption": "clean",
                        "severity": 0,
                        "clean_data": self.clean_data,
                        "clean_preprocessing": ctx.model.data_config.describe(),
                    },
                )
            )
        return conds

    def upcoming(self, ctx: EvalContext, conds: list[Condition]) -> None:
        ctx.state["upcoming"] = list(conds)

    def condition_context(self, ctx: EvalContext, cond: Condition) -> EvalContext:
        """The cell's folder, decoded; the next cell this run computes is decoded meanwhile in a
        background thread, so decoding overlaps the model's work instead of preceding it."""
        running = ctx.state.pop("prefetch", None)
        if running is not None:
            running.join()  # it decoded this cell (or failed: then the call below decodes it)
        ready = ctx.state.setdefault("prefetched", {}).pop(cond.name, None)
        order = ctx.state.get("upcoming", [])
        nxt = next((order[k + 1] for k, c in enumerate(order[:-1]) if c.name == cond.name), None)
        if nxt is not None:
            thread = threading.Thread(
                target=self._prefetch, args=(ctx, nxt), name="rbvit-prefetch", daemon=True
            )
            thread.start()
            ctx.state["prefetch"] = thread
        return ready if ready is not None else self._cell_context(ctx, cond)

    def _prefetch(self, ctx: EvalContext, cond: Condition) -> None:
        try:
            ctx.state["prefetched"][cond.name] = self._cell_context(ctx, cond)
        except Exception as e:  # noqa: BLE001 - the condition itself decodes again and reports it
            log.debug("prefetch of %s failed: %s", cond.name, e)

    def _cell_context(self, ctx: EvalContext, cond: Condition) -> EvalContext:
        return ctx.for_dataset(*self.condition_data(ctx, cond))

    def condition_data(self, ctx: EvalContext, cond: Condition) -> ConditionData:
        """The cell's folder (or the clean folder), the images of the run's selection in it."""
        p = cond.params
        if p["corruption"] == "clean":
            folder, dc = Path(self.clean_data), ctx.model.data_config  # the standard clean evaluation
        else:
            folder, dc = ctx.dataset.root / p["corruption"] / str(p["severity"]), ctx.cache.data_config
        ds = image_folder(folder)
        pos = {it: i for i, it in enumerate(ds.items)}
        wanted = [ctx.dataset.items[i] for i in ctx.indices]
        if p["corruption"] == "clean" or any(w not in pos for w in wanted):
            if p["corruption"] != "clean":
                log.warning("%s lacks some evaluated files; using its own class-stratified subset", folder)
            full = len(ctx.indices) == len(ctx.dataset)
            idx = np.arange(len(ds)) if full else stratified_limit(ds.targets, len(ctx.indices), LIMIT_SEED)
        else:
            idx = np.asarray([pos[w] for w in wanted], dtype=np.int64)
        return ds, dc, idx, self.label_map(ds, ctx.model)

    def summarize(self, results: list[Result]) -> list[Result]:
        return corruption_summary(results)
