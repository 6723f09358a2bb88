"""The rows of a run: its identity (run id, image set), its shared columns, and the one function that
turns a condition's typed results into :class:`~robustbench_vit.storage.store.Record` rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_vit import __version__
from robustbench_vit.device import (
    changed_attention_kernels,
    changed_float32_precision,
    changed_kernel_switches,
    float32_precision,
    numerics_environment,
)
from robustbench_vit.identity import digest, loaded_model_identity, run_key
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.replaced_code import running_software
from robustbench_vit.storage.store import Record
from robustbench_vit.suites import Suite
from robustbench_vit.suites.base import Condition, Result

#: run options that split a run over processes and never change its numbers: left out of the recorded
#: config and of sweep cell keys
SPLIT_OPTIONS = ("shard", "devices")

__all__ = [
    "run_id",
    "image_set_id",
    "base_row",
    "records",
    "results_from_rows",
    "sample_columns",
    "concat_samples",
    "now",
]


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {
        "rbvit_version": __version__,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
    }


def run_id(
    model: LoadedModel,
    suite: Suite,
    data_identity: str,
    opts: Any,
    decoder: str,
    suite_identity: dict | None = None,
) -> str:
    """The run's key (:func:`robustbench_vit.identity.run_key`): the loaded model's identity, the content
    identity of the evaluated images, the suite's configuration with the content identity of the models it
    references (:meth:`Suite.identity`) and its geometry, the options that change
    a number (the decoder too: nvjpeg's pixels differ from libjpeg's by about a level) and the versions
    of the libraries that compute it."""
    geometry = suite.data_config(model).to_dict()
    geometry.pop("source", None)
    options = {
        "seed": opts.seed,
        "dtype": opts.dtype,
        "save_samples": opts.save_samples,
        # batch-mode masks are drawn once per batch, so results depend on the requested batch size
        "batch_size": opts.batch_size,
        "decoder": decoder,
        "geometry": geometry,
        "software": running_software(),
    }
    return run_key(
        model=loaded_model_identity(model),
        data=data_identity,
        # the configuration and the content identity of every model the suite builds (a transfer source,
        # a saliency model): a source checkpoint overwritten in place is another run
        suite=suite_identity if suite_identity is not None else suite.identity(opts.cache_dir),
        options=options,
    )


def image_set_id(data_identity: str) -> str:
    """Which images a run evaluated: the content identity of the selected items (ids, bytes, classes)."""
    return data_identity[:16]


def records(
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


def concat_samples(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        k: np.concatenate([np.asarray(p[k]) for p in parts])
        if isinstance(parts[0][k], np.ndarray)
        else [v for p in parts for v in p[k]]
        for k in parts[0]
    }


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def sample_columns(acc: Any, ctx: Any, base: dict[str, Any], cond: Condition) -> dict[str, Any]:
    """Per-image rows of one condition, named in the context it read (``ctx``: the run's, or an ImageNet-C
    cell's or clean counterpart's): each row's ``item``, ``image_sha256`` (the SHA-256 of the file, or
    of an in-memory item's pixels, its cache slot was decoded from; null where the run decoded no slot) and
    ``label_class`` (its dataset class by name),
    so per-image readers pair the same image, never the same position in two image lists."""
    s = acc.samples()
    n = len(s["index"])
    idx = s["index"]
    items = ctx.dataset.items
    tags = ctx.cache.store.tags_of(idx) if n else np.zeros((0, 32), np.uint8)
    filled = ctx.cache.filled[idx] if n else np.zeros(0, bool)
    return {
        "run_id": [base["run_id"]] * n,
        "model": [base["model"]] * n,
        "suite": [base["suite"]] * n,
        "dataset": [base["dataset"]] * n,
        "condition": [cond.name] * n,
        "source_model": [cond.params.get("source_model")] * n,
        "item": [items[i] for i in idx],
        "image_sha256": [t.tobytes().hex() if ok else None for t, ok in zip(tags, filled)],
        # the dataset class the row was graded against, by name: ``label`` indexes the model's (or the
        # suite's masked) label space, whose order two models need not share
        "label_class": [ctx.dataset.class_of(i) for i in idx],
        **s,
    }


def computed_weights(weights: str, patched: dict[str, str]) -> str:
    """The ``weights`` column: the model's weights, and the hooks registered for every module and installed
    packages' code replaced in memory (``patched``, :func:`~robustbench_vit.library_patches.replaced_library_code`)
    when there are any (they change its outputs, so its runs are another board entry, never a seed of the
    plain one)."""
    from robustbench_vit.fingerprint import global_hooks_digest

    hooks = global_hooks_digest()
    return (
        weights
        + ("" if hooks is None else f" global-hooks:{hooks[:12]}")
        + ("" if not patched else f" library-code:{digest(patched)[:12]}")
    )


def computed_dtype(dtype: str) -> str:
    """The ``dtype`` column: the autocast dtype, with the float32 precision switches set away from
    PyTorch's defaults (``fp32 cuda.matmul=tf32``), so a TF32 run is never a seed of a float32 one, and the
    attention kernel switches set away from theirs (``fp32 timm_fused_attn=0``, ``sdpa_off=flash``), and the
    half-precision accumulation and convolution library switches (``fp16 fp16_accumulation=on``,
    ``mkldnn=off``) and the math libraries' environment (``fp32 ONEDNN_DEFAULT_FPMATH_MODE=BF16``)."""
    changed = changed_float32_precision()
    kernels = changed_attention_kernels()
    attention = []
    if timm_attn := kernels.get("timm_fused_attn"):
        attention.append(
            f"timm_fused_attn={timm_attn['level']}{'-exportable' if timm_attn['exportable'] else ''}"
        )
    if "sdpa_disabled" in kernels:
        attention.append(f"sdpa_off={'+'.join(kernels['sdpa_disabled'])}")
    switches = [
        f"{path.removeprefix('cuda.matmul.allow_').removesuffix('.enabled')}={'on' if on else 'off'}"
        for path, on in sorted(changed_kernel_switches().items())
    ]
    env = [f"{k}={v}" for k, v in sorted(numerics_environment().items())]
    return " ".join([dtype, *(f"{k}={v}" for k, v in sorted(changed.items())), *attention, *switches, *env])


def accelerator(device: torch.device) -> dict[str, Any] | None:
    """The GPU, CUDA and cuDNN versions and the float32 settings a CUDA run computed with: ``float32`` convolutions run as TF32
    on Ampere and newer unless cuDNN's is set to ``ieee`` (PyTorch's default is TF32), matmuls only if
    cuBLAS's is set to ``tf32`` (``torch.backends.cuda.matmul.allow_tf32``). ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    precision = float32_precision()  # never the legacy flags, which raise once the new switches are set
    return {
        "name": torch.cuda.get_device_name(device),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        "cuda": torch.version.cuda,
        # the libraries that choose a convolution's kernels: another cuDNN under one torch rounds otherwise
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn_tf32": precision["cudnn.conv"] == "tf32",
        "matmul_tf32": precision["cuda.matmul"] == "tf32",
    }


def base_row(
    m: LoadedModel,
    suite: Suite,
    dataset: str,
    ds: Any,
    opts: Any,
    run_id: str,
    dc: Any,
    decoder: str,
    n_images: int,
    data_identity: str = "",
    suite_identity: dict | None = None,
) -> dict[str, Any]:
    """The columns every row of one run shares. ``decoder`` is the one that filled the image cache
    (``cpu``: libjpeg-turbo/PIL per image; ``nvjpeg``: batches on the GPU), which ``--decode auto`` leaves
    to the device."""
    from robustbench_vit.library_patches import replaced_library_code
    from robustbench_vit.replaced_code import DECODING_MODULES, replaced_code

    # where code was replaced in memory (rbvit's, its decoder's, an installed package's): a reader of the rows
    # sees what the numbers were computed with, not only that the key differs
    patched = replaced_library_code()
    replaced = sorted({*replaced_code(), *replaced_code(DECODING_MODULES), *patched})
    config = {
        "model": m.spec.to_dict(),
        "suite": suite.config(),
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in SPLIT_OPTIONS},
        "data_config": dc.to_dict(),
        "accelerator": accelerator(m.device),
        "decoder": decoder,
        **({"replaced_code": replaced} if replaced else {}),
        # the content identity the run id was derived from, part by part (digests of each part)
        "identity": {
            "model": digest(loaded_model_identity(m)),
            "weights": m.identity.get("weights"),
            "data": data_identity,
            "suite": digest(suite_identity if suite_identity is not None else suite.identity(opts.cache_dir)),
        },
    }
    return {
        "run_id": run_id,
        "model": m.spec.name,
        "family": m.spec.family,
        "arch": m.spec.arch,
        "source": m.spec.source,
        "weights": computed_weights(m.weights, patched),
        "suite": suite.name,
        "suite_version": suite.version,
        "dataset": dataset,
        # the folder itself (resolved): reached through a symlink or a relative path it is still one folder,
        # whose runs the board compares by file list, never by size
        "data_root": str(Path(ds.root).resolve()),
        # the folder's file list (root + every item name) when the run read it: a run of a listing that has
        # since changed (an image deleted or added) is not the board's current number for that folder
        "listing": ds.fingerprint or None,
        "seed": opts.seed,
        # what --limit took (a limit above the set's size takes the whole set: the clamped number)
        "limit": None if opts.limit is None else min(opts.limit, n_images),
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
        "dtype": computed_dtype(m.dtype),
        **_versions(),
        "config": json.dumps(config, sort_keys=True, default=str),
    }
