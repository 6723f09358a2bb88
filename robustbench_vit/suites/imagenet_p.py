"""``imagenet_p``: prediction stability on ImageNet-P perturbation sequences (Hendrycks & Dietterich 2019).

Two data paths. ``source=generated`` (default) builds the sequences of the 10 perturbation types on the
model's device from an ImageNet val folder, with the parameters of the reference ``make_imagenet_p.py``
(``perturbations/sequences.py``). ``source=files`` reads the released MP4s,
``<root>/<perturbation>[_<difficulty>]/<wnid>/<name>.mp4`` (needs PyAV: ``pip install av``).

Rows per (perturbation, difficulty): ``flip_probability`` (FP) and ``top5_distance`` (T5D), means over
sequences (``stability.py``). Difficulty: for the noise types the noise strength (released as
``<type>_2`` / ``_3``), for the others the frame stride. Summaries: mean FP and T5D over the cells run,
and -- given ``baseline``, a results folder holding the same cells for ``baseline_model`` (AlexNet in the
paper: ``rbvit eval -m torchvision:alexnet -s imagenet_p --out <folder>``) -- per type
FR = sum_d FP / sum_d FP_baseline and T5DR likewise, and their means mFR and mT5D when all 10 types are
there. No baseline numbers are built in.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.metrics.accumulators import (
    ClassificationAccumulator,
    MetricValue,
    PrecomputedResults,
    register_metric,
)
from robustbench_vit.metrics.stability import flip_probability, top5_distance, top5_indices
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.models.probes import resize_to
from robustbench_vit.perturbations import sequences as seq
from robustbench_vit.perturbations.video_codec import h264_available, h264_round_trips, h264_settings
from robustbench_vit.suites.base import Condition, EvalContext, Result, Suite, batch_generator, register_suite
from robustbench_vit.suites.imagenet_p_baseline import read_baseline

__all__ = ["ImageNetP", "read_video"]

log = logging.getLogger(__name__)

for _name, _hib, _desc in (
    ("flip_probability", False, "ImageNet-P flip probability (mean over sequences)"),
    ("top5_distance", False, "ImageNet-P top-5 distance (mean over sequences)"),
    ("mean_flip_probability", False, "mean FP over the perturbation cells run"),
    ("mean_top5_distance", False, "mean T5D over the perturbation cells run"),
    ("flip_rate", False, "FP summed over difficulties, divided by the baseline model's (FR)"),
    ("top5_distance_rate", False, "T5D summed over difficulties, divided by the baseline model's"),
    ("mfr", False, "mean flip rate over the 10 ImageNet-P types (baseline-normalised)"),
    ("mt5d", False, "mean top-5 distance rate over the 10 ImageNet-P types (baseline-normalised)"),
):
    register_metric(_name, higher_is_better=_hib, proportion=False, description=_desc)

Perturbation = Literal[
    "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
    "brightness", "translate", "rotate", "tilt", "scale",
]  # fmt: skip
Difficulty = Literal[1, 2, 3]


def read_video(path: Path) -> torch.Tensor:
    """(frames, 3, H, W) uint8 RGB frames of one released sequence."""
    try:
        import av
    except ImportError:
        raise ConfigError("source=files reads the released MP4s with PyAV: pip install av") from None
    try:
        with av.open(str(path)) as box:
            frames = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in box.decode(video=0)]
    except Exception as e:  # av raises its own error types for unreadable files
        raise DataError(f"cannot read video {path}: {type(e).__name__}: {e}") from None
    if not frames:
        raise DataError(f"video {path} has no frames")
    return torch.stack(frames).permute(0, 3, 1, 2).contiguous()


def _folder(p: str, d: int) -> str:
    return p if (d == 1 or not seq.SEQUENCES[p].noise) else f"{p}_{d}"


@register_suite("imagenet_p")
@dataclass(frozen=True)
class ImageNetP(Suite):
    """Flip probability and top-5 distance on ImageNet-P sequences; mFR / mT5D against a baseline run.

    Parameters:
        source: ``generated`` (on the fly from ImageNet val) or ``files`` (the released MP4s).
        perturbations: types to run (default all 10).
        difficulties: 1..3 (noise strength for the noise types, frame stride otherwise; default 1).
        baseline: results folder with the baseline model's imagenet_p rows (for FR, mFR, mT5D).
        baseline_model: the baseline's model name in that folder (default ``alexnet``).
        codec: ``none`` (generated frames as the script's PNGs) or ``h264`` (each generated sequence coded
            as the released MP4s were: libx264 with make_imagenet_p.py's settings, then decoded).
    """

    #: 2: generated sequences transform the whole short-side-256 image (576 px canvas, carried extent).
    #: 3: motion_blur frames and the snow layer are ImageMagick's 8 bits (16-bit rounding, then the floor)
    version: ClassVar[int] = 3
    paper: ClassVar[str] = "Hendrycks & Dietterich 2019, Benchmarking Neural Network Robustness (ImageNet-P)"
    metrics: ClassVar[tuple[str, ...]] = ("flip_probability", "top5_distance")
    calibration: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[tuple[tuple[str, str], ...]] = (
        ("summary/mfr", "mfr"),
        ("summary/mt5d", "mt5d"),
        ("summary/mean", "mean_flip_probability"),
        ("summary/mean", "mean_top5_distance"),
    )

    source: Literal["generated", "files"] = "generated"
    perturbations: tuple[Perturbation, ...] = tuple(seq.SEQUENCES)  # type: ignore[assignment]
    difficulties: tuple[Difficulty, ...] = (1,)
    baseline: str = ""
    baseline_model: str = "alexnet"
    codec: Literal["none", "h264"] = "none"

    def __post_init__(self) -> None:
        if self.codec != "none" and self.source == "files":
            raise ConfigError("codec applies to generated sequences; the released files are H.264 already")
        if self.codec == "h264":
            h264_available()

    @property
    def uses_run_cache(self) -> bool:  # type: ignore[override]
        return self.source == "generated"

    def libraries(self) -> tuple[str, ...]:
        # PyAV (its FFmpeg and x264) decodes the released MP4s, or codes the generated sequences
        return ("av",) if self.source == "files" or self.codec != "none" else ()

    def config(self) -> dict[str, Any]:
        # coded runs are keyed by how they code (x264's settings), uncoded ones keep their key
        return {**super().config(), **({"x264": h264_settings()} if self.codec == "h264" else {})}

    # --- data -------------------------------------------------------------------------------------
    def open_data(self, data, dataset, labels):  # type: ignore[no-untyped-def]
        if self.source == "generated":
            return super().open_data(data, dataset, labels)
        self.refuse_labels_file(labels)
        if data is None:
            raise DataError(
                "imagenet_p source=files needs --data PATH to the ImageNet-P folder (<perturbation>/<wnid>/*.mp4)"
            )
        root = Path(data).expanduser()
        if not root.is_dir():
            raise DataError(
                f"ImageNet-P folder not found: {root} (pass --data PATH to <perturbation>/<wnid>/*.mp4)"
            )
        first = next((root / p for p in self.perturbations if (root / p).is_dir()), None)
        if first is None:
            raise DataError(f"{root} has none of the folders {', '.join(self.perturbations)}")
        items = sorted(str(v.relative_to(first).with_suffix("")) for v in first.glob("*/*.mp4"))
        if not items:
            raise DataError(f"no <wnid>/*.mp4 sequences under {first}")
        classes = tuple(sorted({it.split("/")[0] for it in items}))
        targets = np.asarray([classes.index(it.split("/")[0]) for it in items], dtype=np.int64)

        def unreadable(i: int) -> torch.Tensor:
            raise DataError("ImageNet-P videos are read per condition, not as images")

        return "imagenet-p", ImageDataset(
            "imagenet-p-videos", root, classes, items, targets, unreadable, root.name
        )

    def data_config(self, model: LoadedModel) -> DataConfig:
        """Generated sequences start from the short-side-256 image on a black 576 px square (see sequences)."""
        dc = model.data_config
        if self.source == "files":
            return dc
        return dc.replace(
            input_size=(3, seq.CANVAS, seq.CANVAS),
            crop_pct=seq.CANVAS / seq.RESIZE,
            interpolation="bilinear",
            crop_mode="center",
            source=f"{dc.source}; make_imagenet_p resize {seq.RESIZE} on a {seq.CANVAS} px canvas",
        )

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        conds = []
        for p in self.perturbations:
            spec = seq.SEQUENCES[p]
            for d in self.difficulties:
                params = {
                    "perturbation": p,
                    "difficulty": d,
                    "sequences": self.source,  # ("source" is a row column: the model's source)
                    "frames": spec.frames,
                    "compared": "first frame" if spec.noise else f"frames {d} apart",
                    "frame_size": seq.CROP,
                    "model_input": list(ctx.model.data_config.image_size),
                }
                if spec.noise:
                    params["noise_level"] = seq.NOISE_LEVELS[p][d - 1]
                if self.source == "generated":
                    params["codec"] = self.codec
                    if self.codec == "h264":
                        params["x264"] = h264_settings()
                if self.source == "files":
                    folder = Path(ctx.dataset.root) / _folder(p, d)
                    if not folder.is_dir():
                        log.warning("imagenet_p: %s missing, %s difficulty %d skipped", folder, p, d)
                        continue
                    params["folder"] = folder.name
                conds.append(Condition(f"{p}/d={d}", float(d), params))
        if not conds:
            raise DataError("imagenet_p: no perturbation folder to evaluate")
        return conds

    def condition_files(self, ctx: EvalContext, cond: Condition) -> list[Path] | None:
        """The released sequences a condition reads (``source=files``): their bytes identify it."""
        if self.source == "generated":
            return None
        folder = Path(ctx.dataset.root) / cond.params["folder"]
        return [folder / f"{ctx.dataset.items[i]}.mp4" for i in ctx.indices]

    # --- evaluation -------------------------------------------------------------------------------
    def _sequences(self, ctx: EvalContext, cond: Condition, per_step: int):  # type: ignore[no-untyped-def]
        """Yield (frames (T, B, 3, 224, 224) in [0, 1] on the device, batch size) per step."""
        p, d = cond.params["perturbation"], int(cond.params["difficulty"])
        if self.source == "generated":
            for x, _y, idx in ctx.batches(per_step):
                gen = batch_generator(ctx.seed, self.name, cond.name, int(idx[0]))
                frames = seq.generate(p, x, self._extents(ctx)[torch.as_tensor(idx).cpu().long()], gen, d)
                yield (
                    (self._coded(frames, seq.SEQUENCES[p].noise) if self.codec == "h264" else frames),
                    len(idx),
                )
            return
        folder = Path(ctx.dataset.root) / cond.params["folder"]
        paths = self.condition_files(ctx, cond) or []
        with ThreadPoolExecutor(4) as pool:
            for s in range(0, len(paths), per_step):
                videos = list(pool.map(read_video, paths[s : s + per_step]))
                lengths = {len(v) for v in videos}
                if len(lengths) != 1:
                    raise DataError(
                        f"{folder}: sequences of different lengths {sorted(lengths)} in one batch"
                    )
                frames = torch.stack(videos, 1).to(ctx.device).float().div_(255)
                yield frames, len(videos)

    @staticmethod
    def _coded(frames: torch.Tensor, noise: bool) -> torch.Tensor:
        """(T, B, 3, H, W) frames in [0, 1] (uint8 levels, as the script's PNGs) through the H.264 round trip,
        each sequence on its own (one x264 thread each, sequences in parallel)."""
        levels = (frames * 255).round().to(torch.uint8).cpu()
        return h264_round_trips(levels, noise=noise).to(frames.device).float().div_(255)

    def _extents(self, ctx: EvalContext) -> torch.Tensor:
        """Every evaluated image's canvas extent, indexed by dataset index: the file headers are read once
        per run, not once per perturbation type."""
        if "imagenet_p_extents" not in ctx.state:
            table = torch.zeros(len(ctx.dataset), 4, dtype=torch.float64)
            table[torch.as_tensor(ctx.indices)] = image_extents(ctx.dataset, ctx.indices.tolist())
            ctx.state["imagenet_p_extents"] = table
        return ctx.state["imagenet_p_extents"]

    def _top5(self, ctx: EvalContext, cond: Condition, bs: int) -> torch.Tensor:
        """(T, N, 5) top-5 classes of every frame of every sequence. The frames of a non-noise type do not
        depend on the difficulty (the stride), so they are computed once per run and type."""
        spec = seq.SEQUENCES[cond.params["perturbation"]]
        key = ("imagenet_p_top5", spec.name, cond.params.get("folder"), cond.name if spec.noise else None)
        if key in ctx.state:  # the frames of another difficulty: every sequence is done already
            if ctx.on_batch:
                ctx.on_batch(int(ctx.state[key].shape[1]))
            return ctx.state[key]
        size = ctx.model.data_config.image_size
        parts = []
        for frames, b in self._sequences(ctx, cond, max(1, bs // spec.frames)):
            t = frames.shape[0]
            flat = frames.reshape(t * b, *frames.shape[2:])
            with torch.no_grad():
                top5 = torch.cat(
                    [top5_indices(ctx.model(resize_to(c, size))) for c in flat.split(max(1, bs))]
                )
            parts.append(top5.reshape(t, b, 5).cpu())
            if ctx.on_batch:
                ctx.on_batch(b)
        ctx.state[key] = torch.cat(parts, 1)
        return ctx.state[key]

    def _run(
        self, ctx: EvalContext, cond: Condition, bs: int
    ) -> list[tuple[Condition, ClassificationAccumulator]]:
        spec = seq.SEQUENCES[cond.params["perturbation"]]
        stride = 1 if spec.noise else int(cond.params["difficulty"])
        top5 = self._top5(ctx, cond, bs)
        fp, t5d = flip_probability(top5, spec.noise, stride), top5_distance(top5, spec.noise, stride)
        n = top5.shape[1]
        values: list[Result] = [
            (cond, MetricValue("flip_probability", float(fp.mean()), n)),
            (cond, MetricValue("top5_distance", float(t5d.mean()), n)),
        ]
        return [(cond, PrecomputedResults(values))]

    def prepare(self, ctx: EvalContext) -> None:
        # what the baseline rows must have been computed on: the same images (the ``image_set`` column is
        # the first 16 hex digits of the run's content identity) and the same seed
        object.__setattr__(self, "_run_images", (ctx.identity[:16], ctx.seed))

    # --- summaries ---------------------------------------------------------------------------------
    def summarize(self, results: list[Result]) -> list[Result]:
        cells = {
            (c.params["perturbation"], int(c.params["difficulty"]), mv.metric): mv
            for c, mv in results
            if mv.metric in ("flip_probability", "top5_distance")
        }
        if not cells:
            return []
        n = min(mv.n for mv in cells.values())
        out: list[Result] = []
        for metric, mean_name in (
            ("flip_probability", "mean_flip_probability"),
            ("top5_distance", "mean_top5_distance"),
        ):
            vals = [mv.value for k, mv in cells.items() if k[2] == metric]
            cond = Condition("summary/mean", None, {"cells": len(vals), "sequences": self.source})
            out.append((cond, MetricValue(mean_name, float(np.mean(vals)), n)))
        if not self.baseline:
            log.info(
                "imagenet_p: mFR / mT5D need -p baseline=<results folder with the baseline model's rows>"
            )
            return out
        images, seed = getattr(self, "_run_images", (None, None))
        baseline = read_baseline(
            self.baseline,
            self.baseline_model,
            suite=self.name,
            source=self.source,
            images=images,
            seed=seed,
            codec=self.codec,
            x264=h264_settings() if self.codec == "h264" else "",
        )
        base = baseline.table
        who = {"baseline_model": self.baseline_model, "baseline_weights": baseline.weights}
        rates: dict[str, list[float]] = {"flip_rate": [], "top5_distance_rate": []}
        for p in dict.fromkeys(k[0] for k in cells):
            for metric, rate in (("flip_probability", "flip_rate"), ("top5_distance", "top5_distance_rate")):
                ds = sorted(k[1] for k in cells if k[0] == p and k[2] == metric)
                if not all((p, d, metric) in base for d in ds):
                    log.warning("imagenet_p: baseline lacks %s at difficulties %s; no %s", p, ds, rate)
                    continue
                denom = sum(base[(p, d, metric)] for d in ds)
                if denom == 0:
                    log.warning("imagenet_p: baseline %s of %s is 0; no %s", metric, p, rate)
                    continue
                value = sum(cells[(p, d, metric)].value for d in ds) / denom
                params = {"perturbation": p, "difficulties": ds, **who}
                out.append((Condition(f"summary/{rate}/{p}", None, params), MetricValue(rate, value, n)))
                rates[rate].append(value)
        for rate, mean_name in (("flip_rate", "mfr"), ("top5_distance_rate", "mt5d")):
            if len(rates[rate]) == len(seq.SEQUENCES):
                params = {**who, "types": len(rates[rate])}
                out.append(
                    (
                        Condition(f"summary/{mean_name}", None, params),
                        MetricValue(mean_name, float(np.mean(rates[rate])), n),
                    )
                )
            else:
                log.warning(
                    "imagenet_p: %s needs all %d types with a baseline, have %d",
                    mean_name,
                    len(seq.SEQUENCES),
                    len(rates[rate]),
                )
        return out


def image_extents(ds: ImageDataset, indices: list[int]) -> torch.Tensor:
    """Where each image lies on its generated-sequence canvas (:func:`sequences.canvas_extent`), from the
    size in the file's header (the pixels of array datasets): carried with the canvas, never detected."""
    from PIL import Image

    sizes = []
    for i in indices:
        path = ds.file(i) if ds.file is not None else None
        if path is None:
            sizes.append(tuple(ds.read(i).shape[-2:]))
            continue
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception as e:  # noqa: BLE001 - the decoder read it into the cache; say which file
            raise DataError(f"image {path}: size unreadable ({e})") from None
        sizes.append((h, w))
    return seq.canvas_extent(sizes)
