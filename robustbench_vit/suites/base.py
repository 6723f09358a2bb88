"""The suite contract: a frozen dataclass of parameters whose base class owns the evaluation loop.

A suite lists its :class:`Condition` s and implements :meth:`Suite.perturb` (a pure, seeded
function of the batch); the base class moves batches to the model's device, converts the cached
uint8 images to [0, 1], seeds a generator per (condition, batch), runs the model, streams the
metrics, and halves the batch size on CUDA out-of-memory. The runner never branches on suite
names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, final

import numpy as np
import torch

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.data.labels import no_classifier
from robustbench_vit.data.loader import device_batches
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import (
    CALIBRATION_METRICS,
    ClassificationAccumulator,
    MetricValue,
    PrecomputedResults,
)
from robustbench_vit.models.loading import LoadedModel, load_model
from robustbench_vit.models.referenced import check_loaded_as_named
from robustbench_vit.registry import Registry
from robustbench_vit.suites.memory import chunked_forward, retry_out_of_memory
from robustbench_vit.suites.params import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    Range,
    check_fields,
)
from robustbench_vit.suites.seeding import batch_generator, derive_seed, model_rng, seed_of

__all__ = [
    "Condition",
    "ConditionData",
    "EvalContext",
    "Result",
    "Suite",
    "SUITES",
    "register_suite",
    "derive_seed",
    "batch_generator",
    "seed_of",
    "check_fields",
    "Range",
    "POSITIVE",
    "AT_LEAST_ONE",
    "NON_NEGATIVE",
    "UNIT",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    """One evaluated setting of a suite, e.g. ``fraction=0.5`` with ``seed=1``.

    ``name`` is unique within the suite run; ``severity`` is the main numeric knob (fraction,
    grid, epsilon, radius ...); ``params`` holds every knob and is stored as JSON in each row.
    """

    name: str
    severity: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


#: one measured value: the condition (name, severity, params) it belongs to and the metric value
Result = tuple[Condition, MetricValue]
#: the images a condition reads instead of the run's: (dataset, geometry, indices, label map)
ConditionData = tuple[ImageDataset, DataConfig, np.ndarray, np.ndarray]


@dataclass
class EvalContext:
    """Everything a suite may use while evaluating one model on one dataset."""

    model: LoadedModel
    dataset: ImageDataset
    dataset_name: str
    cache: ImageCache
    indices: np.ndarray
    labels: np.ndarray
    batch_size: int
    seed: int
    workdir: Path
    on_batch: Callable[[int], None] | None = None
    state: dict[str, Any] = field(default_factory=dict)  # per-run artifacts a suite prepares
    #: content identity of the evaluated images (:meth:`ImageCache.identity`): every artifact a suite
    #: stores per image (saliency maps, adversarials, attack outcomes) is keyed by it
    identity: str = ""
    #: the content identity of each model the suite references, as the run's id names it
    #: (:meth:`Suite.identity`): :meth:`Suite.load_referenced` checks the loaded model against it
    referenced: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def for_dataset(
        self, dataset: ImageDataset, data_config: DataConfig, indices: np.ndarray, label_map: np.ndarray
    ) -> EvalContext:
        """This context on another image folder (a clean counterpart, one ImageNet-C cell): its images
        decoded into the same cache root under ``data_config``, labels mapped by ``label_map``."""
        cache = ImageCache(
            dataset, data_config, self.cache.dir.parent, decode_device=self.cache.decode_device
        )
        cache.ensure(indices)
        return dataclasses.replace(
            self,
            dataset=dataset,
            cache=cache,
            indices=indices,
            labels=label_map[dataset.targets],
            identity=cache.identity(indices),
        )

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x in [0,1] float on device, labels, dataset indices)``, read ahead (see loader); while a
        batch is out, the global RNG a model's own noise draws from is seeded for it (:func:`model_rng`)."""
        for x, y, idx in device_batches(self.cache, self.indices, self.labels, self.device, batch_size):
            with model_rng(self.seed, int(idx[0]), self.device):
                yield x, y, idx


SUITES: Registry[type[Suite]] = Registry("suite")


def register_suite(name: str) -> Callable[[type[Suite]], type[Suite]]:
    def deco(cls: type[Suite]) -> type[Suite]:
        cls.name = name
        SUITES.add(name, cls)
        return cls

    return deco


@dataclass(frozen=True)
class Suite:
    """Base class of every suite. Subclasses are frozen dataclasses registered with ``@register_suite``."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    paper: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ("top1",)
    needs_grad: ClassVar[bool] = False
    #: suites that score class predictions (all but feature analyses) refuse a model without a classifier
    needs_labels: ClassVar[bool] = True
    #: calibration metrics reported for every condition besides ``metrics`` (suites whose conditions are
    #: not classification under shift, e.g. attacks, override :meth:`condition_metrics` instead)
    calibration: ClassVar[tuple[str, ...]] = CALIBRATION_METRICS
    #: (condition glob, metric) pairs shown in the Markdown leaderboard (default: every condition)
    headline: ClassVar[tuple[tuple[str, str], ...]] = ()

    #: suites that restrict logits to a dataset's class subset (ImageNet-A/R) set this
    handles_class_subset: ClassVar[bool] = False
    #: suites whose every condition reads its own folder (ImageNet-C) set this False: the runner then
    #: skips decoding the run-level dataset into the cache
    uses_run_cache: ClassVar[bool] = True
    #: suites with few, long conditions (AutoAttack) set this: under a shard ``(k, n)`` they compute and
    #: store every k-th batch of each condition (:meth:`prefill`) instead of every k-th condition, and
    #: the unsharded final pass assembles the rows from what the shards stored
    splits_batches: ClassVar[bool] = False

    # --- what subclasses implement ------------------------------------------------------------
    def conditions(self, ctx: EvalContext) -> list[Condition]:
        raise NotImplementedError

    def open_data(
        self, data: str | None, dataset: str | None, labels: str | None
    ) -> tuple[str, ImageDataset]:
        """Resolve ``--data`` (default: the generic layouts of :func:`open_dataset`)."""
        from robustbench_vit.data.registry import open_dataset

        return open_dataset(data, dataset=dataset, labels=labels)

    def refuse_labels_file(self, labels: str | None) -> None:
        """For suites whose class folders give the labels (ImageNet-A/-C/-O/-P): ``--labels`` is an error."""
        if labels:
            msg = f"--labels has no meaning for suite {self.name}: its folder's class sub-folders give the labels"
            raise ConfigError(f"{msg}; drop --labels")

    def data_config(self, model: LoadedModel) -> DataConfig:
        """Geometry the images are decoded with (default: the model's own preprocessing)."""
        return model.data_config

    def condition_data(self, ctx: EvalContext, cond: Condition) -> ConditionData | None:
        """Images a condition reads instead of the run's: ``(dataset, geometry, indices, label map)`` (an
        ImageNet-C cell, a clean counterpart); default ``None``, the run's images."""
        return None

    def condition_context(self, ctx: EvalContext, cond: Condition) -> EvalContext:
        """The context a condition is evaluated in: the run's, or :meth:`condition_data` decoded."""
        data = self.condition_data(ctx, cond)
        return ctx if data is None else ctx.for_dataset(*data)

    def condition_files(self, ctx: EvalContext, cond: Condition) -> list[Path] | None:
        """Files other than images a condition reads (ImageNet-P's released videos); default ``None``."""
        return None

    @final
    def condition_inputs(self, ctx: EvalContext, cond: Condition) -> str | None:
        """Content identity of what a condition reads besides the run's images, as it is now (files whose
        stat tuple changed are hashed, nothing is decoded): the images :meth:`condition_data` names or the
        files :meth:`condition_files` lists; ``None`` for conditions that read the run's images only. A
        finished condition is reused only while this equals what it was computed from."""
        files = self.condition_files(ctx, cond)
        if files is not None:
            from robustbench_vit.models.identity import files_identity

            return files_identity(files, cache_dir=ctx.cache.root)
        data = self.condition_data(ctx, cond)
        if data is None:
            return None
        ds, dc, idx, _ = data
        cache = ImageCache(ds, dc, ctx.cache.root, decode_device=ctx.cache.decode_device)
        return cache.current_identity(idx)

    def prepare(self, ctx: EvalContext) -> None:
        """Once per run, before any condition (e.g. compute saliency maps)."""

    def upcoming(self, ctx: EvalContext, conds: list[Condition]) -> None:
        """The conditions this run will compute, in order (finished and other shards' left out), so a
        suite can prepare the next one's data while the current one runs (ImageNet-C)."""

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Return the perturbed batch (RGB in [0, 1]); the default is the identity."""
        return x

    def variants(self, cond: Condition) -> list[Condition]:
        """Sub-conditions evaluated together in one pass (e.g. many Fourier bases per forward).

        When this returns V > 1 entries, :meth:`perturb` returns (V * B, ...) images: the batch
        perturbed by variant 0, then variant 1, ... Each variant gets its own result rows.
        """
        return [cond]

    def logits(self, ctx: EvalContext, x: torch.Tensor) -> torch.Tensor:
        return ctx.model(x)

    def is_clean_pass(self, cond: Condition) -> bool:
        """Whether ``cond`` is the model's plain logits on the run's images unchanged (``clean``, occlusion at
        fraction 0, a 1x1 shuffle): the runner computes that pass once per run and shares it."""
        return False

    def label_map(self, ds: ImageDataset, model: LoadedModel) -> np.ndarray:
        """Model-space label of every dataset class (default: by wnid or class name; -1 for a model without a
        classifier, which only suites that score no prediction evaluate)."""
        if model.label_space.name == "none":
            # the run's model is refused before this (preflight); a model the suite builds is refused here
            if self.needs_labels:
                raise no_classifier(model.spec.name, self.name)
            return np.full(len(ds.classes), -1, dtype=np.int64)
        return np.asarray([model.label_space.index_of(c) for c in ds.classes], dtype=np.int64)

    def condition_metrics(self, results: list[tuple[Condition, ClassificationAccumulator]]) -> list[Result]:
        """Metric values of one finished condition; default: ``self.metrics`` and the calibration metrics
        (NLL, ECE, Brier) for every variant."""
        names = tuple(dict.fromkeys((*self.metrics, *self.calibration)))
        out: list[Result] = []
        for var, acc in results:
            if isinstance(acc, PrecomputedResults):  # a suite's own pass (CKA, sequences) measured these
                out.extend(acc.values)
            else:
                out.extend((var, mv) for mv in acc.results(names))
        return out

    def expand_results(self, results: list[Result]) -> list[Result]:
        """Extra results derived from one finished condition's (e.g. mirrored Fourier bases)."""
        return []

    def summarize(self, results: list[Result]) -> list[Result]:
        """Aggregates over conditions (mean over repeats, AUC, mCE ...), as ``summary/...`` results."""
        return []

    def prefill(self, ctx: EvalContext, cond: Condition, shard: tuple[int, int]) -> None:
        """Compute and store batches ``k, k + n, ...`` of ``cond`` (for ``splits_batches`` suites)."""
        raise NotImplementedError(f"{self.name} does not split its conditions' batches")

    def libraries(self) -> tuple[str, ...]:
        """Modules besides torch, torchvision and Pillow whose code computes this suite's numbers (OpenCV,
        the AutoAttack or foolbox package ...): their installed versions are part of the run's identity."""
        return ()

    def referenced_models(self) -> dict[str, tuple[str, bool]]:
        """Models a suite builds besides the evaluated one (a transfer source, a saliency model), as
        ``parameter -> (reference, pretrained)``: their content identity is part of the run's."""
        return {}

    def load_referenced(self, ctx: EvalContext, param: str) -> LoadedModel:
        """Load the model that parameter ``param`` references (:meth:`referenced_models`) on the run's device
        and precision, checked against the identity the run's id gave it: a source checkpoint or card
        overwritten since the run began is refused, never crafted with under the old digest."""
        ref, pretrained = self.referenced_models()[param]
        loaded = load_model(
            ref, device=str(ctx.device), dtype=ctx.model.dtype, pretrained=pretrained, remember_state=False
        )
        check_loaded_as_named(loaded, ctx.referenced.get(param), ref)
        return loaded

    def reads_other_images(self) -> bool:
        """Whether some condition reads images besides the run's (:meth:`condition_data`, or videos): a
        sweep cannot tell from the run's images alone whether such a cell is complete, so it runs it
        (its finished conditions are reused after their inputs are checked)."""
        overrides = (
            type(self).condition_data is not Suite.condition_data
            or type(self).condition_files is not Suite.condition_files
        )
        return overrides or not self.uses_run_cache

    # --- provided ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"suite": self.name, "version": self.version, **dataclasses.asdict(self)}

    def code_key(self) -> int | dict[str, Any]:
        """The suite's code as it runs, keying its runs and what it stores (:func:`suite_code_key`)."""
        from robustbench_vit.suites.keys import suite_code_key

        return suite_code_key(self)

    def identity(self, cache_dir: str | Path | None = None) -> dict[str, Any]:
        """The suite's part of a run's identity (:func:`~robustbench_vit.suites.keys.suite_identity`)."""
        from robustbench_vit.suites.keys import suite_identity

        return suite_identity(self, cache_dir)

    @final
    def run_condition(
        self, ctx: EvalContext, cond: Condition
    ) -> tuple[list[tuple[Condition, ClassificationAccumulator]], int]:
        """Evaluate one condition (and its variants), retrying on CUDA OOM without changing a draw
        (:mod:`robustbench_vit.suites.memory`). Returns ``([(variant, metrics), ...], images per batch used)``."""
        bs = max(1, ctx.batch_size // len(self.variants(cond)))
        return retry_out_of_memory(lambda b: self._run(ctx, cond, b), ctx.state, bs, cond.name)

    def forward(self, ctx: EvalContext, x: torch.Tensor) -> torch.Tensor:
        """:meth:`logits` of a perturbed batch, in chunks once a forward pass ran out of memory."""
        return chunked_forward(lambda part: self.logits(ctx, part), ctx.state, x)

    def _run(
        self, ctx: EvalContext, cond: Condition, bs: int
    ) -> list[tuple[Condition, ClassificationAccumulator]]:
        run_ctx = self.condition_context(ctx, cond)
        if run_ctx is not ctx:  # what it read: the runner keys its file and names its images by it
            ctx.state.setdefault("inputs", {})[cond.name] = run_ctx.identity
            ctx.state.setdefault("read", {})[cond.name] = run_ctx
        ctx = run_ctx
        variants = self.variants(cond)
        accs = [ClassificationAccumulator() for _ in variants]
        finite = torch.ones((), dtype=torch.bool, device=ctx.device)  # checked once, after the loop
        for x, y, idx in ctx.batches(bs):
            gen = batch_generator(ctx.seed, self.name, cond.name, int(idx[0]))
            with torch.set_grad_enabled(self.needs_grad):
                xp = self.perturb(x, y, idx, cond, ctx, gen)
            with torch.no_grad():
                logits = self.forward(ctx, xp.detach())
            b = len(idx)
            if logits.shape[0] != b * len(variants):
                raise RuntimeError(
                    f"{self.name}.perturb returned {logits.shape[0]} images for {len(variants)} x {b}"
                )
            finite &= torch.isfinite(logits).all()
            for v, acc in enumerate(accs):
                acc.update(logits[v * b : (v + 1) * b], y, idx)
            if ctx.on_batch:
                ctx.on_batch(b)
        if not bool(finite):
            log.warning(
                "%s: the model returned NaN or infinite logits under %s; its metrics count them as errors",
                ctx.model.spec.name,
                cond.name,
            )
        return list(zip(variants, accs))
