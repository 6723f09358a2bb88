"""``(model, suite, dataset, options) -> rows``: the one evaluation path used by the CLI and Python.

The runner resolves the dataset and model, fills the decoded-image cache for the chosen subset,
then walks the suite's conditions. Each finished condition is written to the store at once
(atomically), and a rerun of the same configuration skips finished conditions, so a killed run
loses at most the condition in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from torch import nn

from robustbench_vit import __version__
from robustbench_vit.data.cache import ImageCache, default_cache_dir
from robustbench_vit.data.registry import MASKED_DATASETS
from robustbench_vit.data.subset import read_subset, stratified_limit
from robustbench_vit.device import autocast_dtype, select_device
from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics import MetricValue
from robustbench_vit.models.loading import LoadedModel, load_model, resolve_spec, wrap_module
from robustbench_vit.store import (
    Record,
    RunStore,
    check_writable,
    params_as_columns,
    probe_writable,
    rows_to_frame,
)
from robustbench_vit.suites import EvalContext, Suite, make_suite
from robustbench_vit.suites.base import Condition, Result

__all__ = ["RunOptions", "evaluate", "Reporter"]

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Progress sink (the CLI passes a rich progress bar; the library default is silent)."""

    def task(self, description: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def close(self) -> None: ...


class _Silent:
    def task(self, description: str, total: int) -> None:
        log.info("%s (%d)", description, total)

    def advance(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything besides the model and suite that shapes a run (all recorded in ``config``)."""

    data: str | None = None
    dataset: str | None = None
    labels: str | None = None
    limit: int | None = None
    subset: str | None = None
    batch_size: int = 64
    device: str | None = None
    dtype: str = "fp32"
    seed: int = 0
    out: str | None = "results"
    save_samples: bool = False
    workers: int | None = None
    pretrained: bool = True
    checkpoint: str | None = None
    cache_dir: str | None = None
    suite_params: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """One-line errors for values no run can use (before any model or image is touched)."""
        for name, lo in (("batch_size", 1), ("limit", 1), ("seed", 0), ("workers", 1)):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if v < lo:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be >= {lo}, got {v}")
        autocast_dtype(self.dtype)


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {
        "rbvit_version": __version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
    }


def _run_id(
    model: LoadedModel, suite: Suite, ds_fingerprint: str, indices: np.ndarray, opts: RunOptions
) -> str:
    ident = {
        "model": model.spec.to_dict(),
        "weights": model.weights,
        "data_config": suite.data_config(model).to_dict(),
        "suite": suite.config(),
        "dataset": ds_fingerprint,
        "indices": hashlib.sha256(indices.tobytes()).hexdigest(),
        "seed": opts.seed,
        "dtype": opts.dtype,
        "save_samples": opts.save_samples,
        # batch-mode masks are drawn once per batch, so results depend on the requested batch size
        "batch_size": opts.batch_size,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def image_set_id(ds_fingerprint: str, indices: np.ndarray) -> str:
    """Which images a run evaluated: the dataset's fingerprint and the exact index list."""
    h = hashlib.sha256(ds_fingerprint.encode())
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _select(ds_targets: np.ndarray, opts: RunOptions, ds: Any) -> np.ndarray:
    if opts.subset:
        idx = read_subset(opts.subset, ds)
        return idx[stratified_limit(ds_targets[idx], opts.limit, opts.seed)] if opts.limit else idx
    if opts.limit:
        return stratified_limit(ds_targets, opts.limit, opts.seed)
    return np.arange(len(ds_targets))


def evaluate(
    model: str | LoadedModel | nn.Module,
    suite: str | Suite,
    options: RunOptions | None = None,
    *,
    reporter: Reporter | None = None,
    preprocessing: dict[str, Any] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Evaluate one model under one suite; returns every row (new and resumed) as a DataFrame.

    ``model`` is a reference (zoo name, ``timm:``/``hf-hub:``/``torchvision:`` name, card, entry point),
    a :class:`LoadedModel`, or any ``nn.Module`` (preprocessing from its timm ``pretrained_cfg``, or
    ``preprocessing={...}``; ``name`` labels its rows).

    Example:
        >>> df = evaluate("efficientnet_lite0", "clean", data="../shared/data/imagenet-samples/val")  # doctest: +SKIP
        >>> df.set_index("metric").value["top1"]  # doctest: +SKIP
        >>> evaluate(timm.create_model("resnet18", pretrained=True), "clean")  # doctest: +SKIP
    """
    opts = dataclasses.replace(options or RunOptions(), **kwargs)
    opts.validate()
    if isinstance(model, nn.Module):
        model = wrap_module(
            model, preprocessing=preprocessing, name=name, device=opts.device, dtype=opts.dtype
        )
    rep = reporter or _Silent()
    suite_obj = suite if isinstance(suite, Suite) else make_suite(suite, opts.suite_params)
    spec = None if isinstance(model, LoadedModel) else resolve_spec(model)  # name errors before any I/O
    if opts.device is not None:
        select_device(opts.device)
    dataset_name, ds = suite_obj.open_data(opts.data, opts.dataset, opts.labels)
    # after the data folder is listed (--out may live inside it); "is a file" fails here, before any work
    writable = probe_writable(opts.out) if opts.out else True
    if dataset_name in MASKED_DATASETS and not suite_obj.handles_class_subset:
        raise ConfigError(
            f"{dataset_name} has 200 classes: evaluate it with --suite {dataset_name.replace('-', '_')}, which restricts "
            "the logits to those classes (an unmasked 1000-way evaluation is not comparable to published numbers)"
        )
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        loaded = load_model(
            spec,
            device=opts.device,
            dtype=opts.dtype,  # type: ignore[arg-type]
            pretrained=opts.pretrained,
            checkpoint=opts.checkpoint,
        )
    class_map = suite_obj.label_map(ds, loaded)
    labels = class_map[ds.targets]
    indices = _select(ds.targets, opts, ds)
    cache_root = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    data_cfg = suite_obj.data_config(loaded)
    cache = ImageCache(ds, data_cfg, cache_root)
    todo = cache.missing(indices) if suite_obj.uses_run_cache else []
    if len(todo):
        rep.task(f"decode {dataset_name} ({data_cfg.describe()})", len(todo))
        cache.ensure(indices, workers=opts.workers, progress=rep.advance)
    ctx = EvalContext(
        model=loaded,
        dataset=ds,
        dataset_name=dataset_name,
        cache=cache,
        indices=indices,
        labels=labels,
        batch_size=opts.batch_size,
        seed=opts.seed,
        workdir=cache.dir / "suites",
        on_batch=rep.advance,
    )
    run_id = _run_id(loaded, suite_obj, ds.fingerprint, indices, opts)
    store = RunStore(
        opts.out or "results",
        suite=suite_obj.name,
        model=loaded.spec.name,
        dataset=dataset_name,
        run_id=run_id,
    )
    base = _base_row(loaded, suite_obj, dataset_name, ds, opts, run_id, data_cfg)
    base.update(image_set=image_set_id(ds.fingerprint, indices), n_images=len(indices))
    rows: list[dict[str, Any]] = []
    results: list[Result] = []  # every condition's typed results, new and resumed, for the summary
    suite_obj.prepare(ctx)
    conds = suite_obj.conditions(ctx)
    names = [c.name for c in conds]
    if len(set(names)) != len(names):
        raise RuntimeError(f"suite {suite_obj.name} yields duplicate condition names")
    if opts.out and not writable and not all(store.done(c.name) for c in conds):
        check_writable(opts.out)  # raises the one-line error before any condition is computed
    for cond in conds:
        if opts.out and store.done(cond.name):
            log.info("skip %s (already in %s)", cond.name, store.path(cond.name))
            old = store.read(cond.name)
            rows.extend(old)
            results.extend(results_from_rows(old))
            continue
        rep.task(f"{loaded.spec.name} | {suite_obj.name} | {cond.name}", len(indices))
        started = _now()
        accs, bs = suite_obj.run_condition(ctx, cond)
        finished = _now()
        measured = suite_obj.condition_metrics(accs)
        measured += suite_obj.expand_results(measured)
        new = _records(base, measured, batch_size=bs, started=started, finished=finished)
        samples = None
        if opts.save_samples:
            samples = _concat([_samples(acc, ds, base, var) for var, acc in accs])
        if opts.out:
            store.write(cond.name, new, samples)
        rows.extend(new)
        results.extend(measured)
    summary = suite_obj.summarize(results)
    if summary:
        done = _now()
        summary_rows = _records(base, summary, batch_size=opts.batch_size, started=done, finished=done)
        if opts.out:
            store.write_if_changed("summary", summary_rows)
        rows.extend(summary_rows)
    frame = rows_to_frame(rows)
    if opts.out:
        for path in suite_obj.write_artifacts(params_as_columns(frame), Path(opts.out) / "figures"):
            log.info("wrote %s", path)
    rep.close()
    return frame


def _records(
    base: dict[str, Any],
    results: list[Result],
    *,
    batch_size: int,
    started: dt.datetime,
    finished: dt.datetime,
) -> list[dict[str, Any]]:
    """The only place rows are built: the run's columns plus one condition's result."""
    return [
        Record(
            **base,
            condition=cond.name,
            severity=cond.severity,
            params=json.dumps(dict(cond.params), sort_keys=True, default=str),
            metric=mv.metric,
            value=mv.value,
            n=mv.n,
            higher_is_better=mv.higher_is_better,
            source_model=cond.params.get("source_model"),
            batch_size=batch_size,
            started_at=started,
            finished_at=finished,
        ).to_row()
        for cond, mv in results
    ]


def results_from_rows(rows: list[dict[str, Any]]) -> list[Result]:
    """Typed results of rows read back from the store (the resume path)."""
    return [
        (
            Condition(r["condition"], r["severity"], json.loads(r["params"] or "{}")),
            MetricValue(r["metric"], r["value"], r["n"]),
        )
        for r in rows
    ]


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        k: np.concatenate([np.asarray(p[k]) for p in parts])
        if isinstance(parts[0][k], np.ndarray)
        else [v for p in parts for v in p[k]]
        for k in parts[0]
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _samples(acc: Any, ds: Any, base: dict[str, Any], cond: Condition) -> dict[str, Any]:
    s = acc.samples()
    n = len(s["index"])
    return {
        "run_id": [base["run_id"]] * n,
        "model": [base["model"]] * n,
        "suite": [base["suite"]] * n,
        "dataset": [base["dataset"]] * n,
        "condition": [cond.name] * n,
        "source_model": [cond.params.get("source_model")] * n,
        "item": [ds.items[i] for i in s["index"]],
        **s,
    }


def _base_row(
    m: LoadedModel, suite: Suite, dataset: str, ds: Any, opts: RunOptions, run_id: str, dc: Any
) -> dict[str, Any]:
    config = {
        "model": m.spec.to_dict(),
        "suite": suite.config(),
        "options": dataclasses.asdict(opts),
        "data_config": dc.to_dict(),
    }
    return {
        "run_id": run_id,
        "model": m.spec.name,
        "family": m.spec.family,
        "arch": m.spec.arch,
        "source": m.spec.source,
        "weights": m.weights,
        "suite": suite.name,
        "suite_version": suite.version,
        "dataset": dataset,
        "data_root": str(ds.root),
        "seed": opts.seed,
        "limit": opts.limit,
        "preprocessing": dc.describe(),
        "input_size": dc.image_size[0],
        "resize_size": dc.resize_size[0],
        "crop_pct": dc.crop_pct,
        "interpolation": dc.interpolation,
        "crop_mode": dc.crop_mode,
        "mean": json.dumps(list(dc.mean)),
        "std": json.dumps(list(dc.std)),
        "preprocessing_source": dc.source,
        "device": str(m.device),
        "dtype": m.dtype,
        **_versions(),
        "config": json.dumps(config, sort_keys=True, default=str),
    }
