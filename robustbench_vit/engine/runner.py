"""``(model, suites, dataset, options) -> rows``: the one evaluation path used by the CLI and Python.

The runner resolves the dataset and model, fills the decoded-image cache for the chosen subset,
then walks each suite's conditions. Each finished condition is written to the store at once
(atomically) when a results folder is given, and a rerun of the same configuration skips finished
conditions, so a killed run loses at most the condition in flight. Several suites in one call share
the loaded model and the decoded cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustbench_vit.data.cache import ImageCache, content_identity, default_cache_dir
from robustbench_vit.data.registry import MASKED_DATASETS
from robustbench_vit.data.subset import LIMIT_SEED, read_subset, stratified_limit
from robustbench_vit.device import float32_default, no_caller_autocast, select_device
from robustbench_vit.engine.options import DECODE_CHOICES, RunOptions, run_options
from robustbench_vit.engine.preflight import (
    check_geometry,
    check_output_width,
    options_for_loaded,
    refuse_writing_into_data,
)
from robustbench_vit.engine.progress import Progress, make_progress
from robustbench_vit.engine.rows import (
    base_row,
    concat_samples,
    image_set_id,
    now,
    records,
    results_from_rows,
    run_id,
    sample_columns,
)
from robustbench_vit.errors import ConfigError
from robustbench_vit.models.loading import LoadedModel, load_model, resolve_spec, wrap_module
from robustbench_vit.models.modules import (
    borrowed,
    check_normalisation,
    check_weights,
    settle_identity,
    with_preprocessing,
)
from robustbench_vit.storage.reading import rows_to_frame
from robustbench_vit.storage.store import RunStore, check_writable, probe_writable
from robustbench_vit.suites import SUITES, EvalContext, Suite, make_suite
from robustbench_vit.suites.base import Result, check_fields

__all__ = ["RunOptions", "evaluate", "parse_suites", "run_options", "DECODE_CHOICES"]

log = logging.getLogger(__name__)


def decode_device(choice: str, device: torch.device) -> torch.device | None:
    """The device that decodes image files in batches for ``--decode choice`` (``None``: CPU threads)."""
    if choice == "device" or (choice == "auto" and device.type == "cuda"):
        return device
    return None


def select_indices(ds_targets: np.ndarray, opts: RunOptions, ds: Any) -> np.ndarray:
    """The dataset indices a run evaluates (``--subset``, then ``--limit``: class-stratified, drawn with
    :data:`LIMIT_SEED` whatever the run's ``--seed``, so every seed of a sweep sees the same images)."""
    if opts.subset:
        idx = read_subset(opts.subset, ds)
        return idx[stratified_limit(ds_targets[idx], opts.limit, LIMIT_SEED)] if opts.limit else idx
    if opts.limit:
        return stratified_limit(ds_targets, opts.limit, LIMIT_SEED)
    return np.arange(len(ds_targets))


def parse_suites(suite: str | Suite | Sequence[str | Suite]) -> list[str | Suite]:
    """``"clean,occlusion"``, ``["clean", "occlusion"]`` or one suite -> a list, in order, without repeats."""
    if not isinstance(suite, (str, Suite, list, tuple)):
        raise ConfigError(
            f"suite must be a name, 'a,b', a Suite or a list of them, got {type(suite).__name__}"
        )
    items = (
        suite.split(",") if isinstance(suite, str) else [suite] if isinstance(suite, Suite) else list(suite)
    )
    out: list[str | Suite] = []
    for s in items:
        if not isinstance(s, (str, Suite)):
            raise ConfigError(f"a suite is a name or a Suite, got {type(s).__name__} {s!r}")
        s = s.strip() if isinstance(s, str) else s
        if s == "":
            raise ConfigError("empty suite name in the suite list (write --suite a,b)")
        if s not in out:
            out.append(s)
    if not out:
        raise ConfigError("no suite given")
    return out


def evaluate(
    model: str | LoadedModel | nn.Module,
    suite: str | Suite | Sequence[str | Suite],
    options: RunOptions | None = None,
    *,
    progress: bool | str | Progress | None = "auto",
    preprocessing: dict[str, Any] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Evaluate one model under one or more suites; returns every row (new and resumed) as a DataFrame.

    ``model`` is a reference (zoo name, bare timm name, ``timm:``/``hf-hub:``/``torchvision:``/
    ``robustbench:`` name, card, entry point), a :class:`LoadedModel`, or any ``nn.Module``
    (preprocessing from its timm ``pretrained_cfg``, or ``preprocessing={...}``; ``name`` labels its rows).
    ``suite`` is a name, ``"a,b"``, or a list; the suites share the loaded model and the decoded cache.
    Files are written only with ``out=`` (the CLI's default is ``results/``). ``progress``: ``"auto"``
    (bars in a terminal or notebook, plain lines otherwise), ``False``, or a :class:`Progress`.

    Example:
        >>> df = evaluate("efficientnet_lite0", ["clean", "occlusion"], data="imagenet-samples/val")  # doctest: +SKIP
        >>> df.query("suite == 'clean'").set_index("metric").value["top1"]  # doctest: +SKIP
        >>> evaluate(timm.create_model("resnet18", pretrained=True), "clean", out="results")  # doctest: +SKIP
    """
    if not isinstance(model, (str, LoadedModel, nn.Module)):
        raise ConfigError(
            f"model must be a name, a card path, a LoadedModel or an nn.Module, got {type(model).__name__}"
        )
    opts = run_options(options, kwargs)
    if isinstance(model, LoadedModel):
        asked = "dtype" in kwargs or (options is not None and options.dtype != RunOptions.dtype)
        opts = options_for_loaded(model, opts, dtype_asked=asked)
    suites = _make_suites(parse_suites(suite), opts.suite_params)
    if opts.devices:  # several processes: robustbench_vit.evaluate (api.py) chooses that executor
        raise ConfigError(
            "devices: call robustbench_vit.evaluate (or rbvit eval --devices), which starts one process per device"
        )
    prog = make_progress(progress)
    try:
        # a notebook's default dtype, autocast or inference mode never reaches a number (attacks need
        # autograd), and a module handed over comes back as it was
        lent = borrowed(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
        with float32_default(), no_caller_autocast(), torch.inference_mode(False), lent:
            frames = _evaluate_all(model, suites, opts, prog, preprocessing, name)
    finally:
        if progress is None or isinstance(progress, (bool, str)):  # ours to close; a caller's is not
            prog.close()
    out = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    out.attrs.update(  # what the caller may report: "N conditions reused from OUT, M computed"
        conditions_reused=sum(f.attrs.get("conditions_reused", 0) for f in frames),
        conditions_computed=sum(f.attrs.get("conditions_computed", 0) for f in frames),
        out=opts.out,
    )
    return out


def _evaluate_all(
    model: str | LoadedModel | nn.Module,
    suites: list[Suite],
    opts: RunOptions,
    prog: Progress,
    preprocessing: dict[str, Any] | None,
    name: str | None,
) -> list[pd.DataFrame]:
    """Each suite's rows, the model loaded (or wrapped) once for all of them."""
    if isinstance(model, nn.Module):
        model = wrap_module(
            model, preprocessing=preprocessing, name=name, device=opts.device, dtype=opts.dtype
        )
    frames = []
    shared: dict = {}  # one clean pass per call, whatever suites ask for it
    for suite_obj in suites:
        frame, model = _evaluate_one(model, suite_obj, opts, prog, shared)
        frames.append(frame)
    return frames


def _finished_conditions(
    suite_obj: Suite, ctx: EvalContext, conds: list[Any], store: RunStore, samples: bool
) -> dict[str, str | None]:
    """Conditions whose verified results (with ``samples``, and per-sample rows) exist for the content they
    read now: ``name -> inputs key`` (``None`` for conditions that read the run's images, which the run id
    already identifies). A condition reading images of its own (an ImageNet-C cell) is reused only while
    those images' identity equals the one its file was computed from; nothing is hashed for conditions with
    no file yet."""
    finished: dict[str, str | None] = {}
    for cond in conds:
        variants = store.input_variants(cond.name)
        if not variants:
            if store.done(cond.name, samples=samples):
                finished[cond.name] = None
            continue
        inputs = suite_obj.condition_inputs(ctx, cond)
        if inputs is not None and inputs[:12] in variants and store.done(cond.name, inputs, samples=samples):
            finished[cond.name] = inputs
    return finished


def _make_suites(items: list[str | Suite], params: Mapping[str, Any]) -> list[Suite]:
    """Suite objects; with several suites each gets the parameters it has, and a parameter that none of
    them has is an error (so a typo is never silently ignored)."""
    if len(items) == 1:
        if isinstance(items[0], Suite):
            check_fields(items[0])
            return [items[0]]
        return [make_suite(items[0], params)]
    suites, used = [], set()
    for item in items:
        if isinstance(item, Suite):
            check_fields(item)  # built in Python: its values get the same checks as -p values
            suites.append(item)
            continue
        fields = {f.name for f in dataclasses.fields(SUITES.get(item))}
        mine = {k: v for k, v in params.items() if k in fields}
        used |= set(mine)
        suites.append(make_suite(item, mine))
    unknown = sorted(set(params) - used)
    if unknown:
        names = ", ".join(s.name for s in suites)
        raise ConfigError(f"parameter {unknown[0]!r} belongs to none of the suites {names}")
    return suites


def _evaluate_one(
    model: str | LoadedModel, suite_obj: Suite, opts: RunOptions, prog: Progress, shared: dict | None = None
) -> tuple[pd.DataFrame, LoadedModel]:
    """One suite: the rows (new and resumed) and the loaded model (reused by the next suite); ``shared``
    holds the clean passes already computed in this call, by (geometry, images, dtype)."""
    shared = {} if shared is None else shared
    spec = None if isinstance(model, LoadedModel) else resolve_spec(model)  # name errors before any I/O
    if opts.device is not None:
        select_device(opts.device)
    dataset_name, ds = suite_obj.open_data(opts.data, opts.dataset, opts.labels)
    refuse_writing_into_data(ds.root, opts)
    writable = probe_writable(opts.out) if opts.out else True  # "is a file" fails here, before any work
    if dataset_name in MASKED_DATASETS and not suite_obj.handles_class_subset:
        raise ConfigError(
            f"{dataset_name} has 200 classes: evaluate it with --suite {dataset_name.replace('-', '_')}, which restricts "
            "the logits to those classes (an unmasked 1000-way evaluation is not comparable to published numbers)"
        )
    if isinstance(model, LoadedModel):
        loaded = settle_identity(model)  # a model the caller changed since loading it is keyed by its state
        check_weights(loaded.net, loaded.spec.name)
        check_normalisation(loaded)
        if loaded.module.training:
            log.warning(
                "%s was in training mode: evaluated in eval mode, as timm's validate.py", loaded.spec.name
            )
            loaded.module.eval()
    else:
        loaded = load_model(
            spec,
            device=opts.device,
            dtype=opts.dtype,  # type: ignore[arg-type]
            pretrained=opts.pretrained,
            checkpoint=opts.checkpoint,
            cache_dir=opts.cache_dir,
            remember_state=False,
        )
    loaded = with_preprocessing(loaded, opts.override_preprocessing)
    check_geometry(loaded.data_config)
    check_output_width(loaded, loaded.data_config, suite_obj.name if suite_obj.needs_labels else None)
    class_map = suite_obj.label_map(ds, loaded)
    labels = class_map[ds.targets]
    indices = select_indices(ds.targets, opts, ds)
    cache_root = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    data_cfg = suite_obj.data_config(loaded)
    check_geometry(data_cfg)
    cache = ImageCache(ds, data_cfg, cache_root, decode_device=decode_device(opts.decode, loaded.device))
    if suite_obj.uses_run_cache:
        todo = cache.missing(indices)
        images = functools.partial(prog.advance, "images")
        if len(todo):
            prog.start("images", f"decode {dataset_name} ({data_cfg.describe()})", len(todo))
        cache.ensure(indices, workers=opts.workers, progress=images)
        data_identity = cache.identity(indices)
    else:  # each condition reads its own images (ImageNet-C cells), identified per condition
        data_identity = content_identity(ds, indices, np.zeros((len(indices), 32), dtype=np.uint8))
    suite_identity = suite_obj.identity(opts.cache_dir)  # hashes referenced models' weights: once per run
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
        on_batch=functools.partial(prog.advance, "images"),
        identity=data_identity,
        referenced=suite_identity.get("models", {}),
    )
    rid = run_id(loaded, suite_obj, data_identity, opts, cache.decoder, suite_identity)
    store = RunStore(
        opts.out or "results", suite=suite_obj.name, model=loaded.spec.name, dataset=dataset_name, run_id=rid
    )
    base = base_row(
        loaded,
        suite_obj,
        dataset_name,
        ds,
        opts,
        rid,
        data_cfg,
        cache.decoder,
        len(indices),
        data_identity,
        suite_identity,
    )
    base.update(image_set=image_set_id(data_identity), n_images=len(indices))
    rows: list[dict[str, Any]] = []
    results: list[Result] = []  # every condition's typed results, new and resumed, for the summary
    suite_obj.prepare(ctx)
    conds = suite_obj.conditions(ctx)
    names = [c.name for c in conds]
    if len(set(names)) != len(names):  # one file per name: one condition's rows would stand for both
        twice = min(n for n, k in Counter(names).items() if k > 1)
        raise ConfigError(
            f"suite {suite_obj.name}: two conditions share the name {twice} (parameter values closer than the "
            "name shows them); give values further apart"
        )
    reusable = _finished_conditions(suite_obj, ctx, conds, store, opts.save_samples) if opts.out else {}
    if opts.out and not writable and len(reusable) < len(conds):
        check_writable(opts.out)  # raises the one-line error before any condition is computed
    # a shard takes every n-th condition, or (splits_batches) every n-th batch of each condition
    prefill_only = opts.shard is not None and suite_obj.splits_batches
    if opts.shard is not None and not prefill_only:
        conds = conds[opts.shard[0] :: opts.shard[1]]
    suite_obj.upcoming(ctx, [c for c in conds if c.name not in reusable])
    reused = 0
    labels_digest = hashlib.sha256(np.ascontiguousarray(labels[indices]).tobytes()).hexdigest()
    label = f"{loaded.spec.name} | {suite_obj.name} | {dataset_name}"
    prog.start("conditions", label, len(conds))
    for cond in conds:
        if cond.name in reusable:
            reused += 1
            inputs = reusable[cond.name]
            log.info("skip %s (already in %s)", cond.name, store.path(cond.name, inputs))
            old = store.read(cond.name, inputs)
            rows.extend(old)
            results.extend(results_from_rows(old))
            prog.advance("conditions")
            continue
        if prefill_only:  # this shard's batches, stored for the unsharded final pass: no rows yet
            log.info("%s: batches %d::%d of %s", suite_obj.name, *opts.shard, cond.name)  # type: ignore[misc]
            suite_obj.prefill(ctx, cond, opts.shard)  # type: ignore[arg-type]
            prog.advance("conditions")
            continue
        prog.start("images", f"{label} | {cond.name}", len(indices))
        started = now()
        # the plain pass over these images (clean, occlusion at 0, a 1x1 shuffle) runs once per call
        key = (
            (data_cfg.geometry_key(), data_identity, labels_digest, opts.dtype)
            if suite_obj.is_clean_pass(cond)
            else None
        )
        if key is not None and key in shared:
            accs, bs = [(cond, shared[key])], opts.batch_size
            prog.advance("images", len(indices))
            log.info("%s: the clean pass of this run, computed once and shared", cond.name)
        else:
            accs, bs = suite_obj.run_condition(ctx, cond)
            if key is not None and len(accs) == 1:
                shared[key] = accs[0][1]
        finished = now()
        measured = suite_obj.condition_metrics(accs)
        measured += suite_obj.expand_results(measured)
        new = records(base, measured, batch_size=bs, started=started, finished=finished)
        samples = None
        read = ctx.state.get("read", {}).pop(cond.name, ctx)  # the images this condition read
        if opts.save_samples:
            samples = concat_samples([sample_columns(acc, read, base, var) for var, acc in accs])
        if opts.out:
            inputs = ctx.state.get("inputs", {}).get(cond.name) or suite_obj.condition_inputs(ctx, cond)
            store.write(cond.name, new, samples, inputs=inputs)
        rows.extend(new)
        results.extend(measured)
        prog.advance("conditions")
    summary = suite_obj.summarize(results) if opts.shard is None else []
    if summary:
        done = now()
        summary_rows = records(base, summary, batch_size=opts.batch_size, started=done, finished=done)
        if opts.out:
            store.write_if_changed("summary", summary_rows)
        rows.extend(summary_rows)
    if opts.out and opts.shard is None:
        store.mark_seen(ds.fingerprint or None)  # the run matches its inputs now: readers prefer it
    # figures are drawn by the caller from the returned rows (results.figures.plots.draw_run_figures)
    frame = rows_to_frame(rows)
    frame.attrs.update(conditions_reused=reused, conditions_computed=len(conds) - reused, out=opts.out)
    return frame, loaded
