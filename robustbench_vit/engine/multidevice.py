"""Several local devices without Ray: ``rbvit eval --devices 0,1,2,3`` runs one process per device, each
evaluating every n-th condition (``RunOptions.shard``) into the same results folder, then one pass in
this process reads the finished files back, writes the summaries and returns every row.

The files are the same as a single-process run's (conditions are seeded by name, not by position or
device), so a killed device process loses only its condition in flight and a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
from typing import Any

import pandas as pd

from robustbench_vit.errors import ConfigError, RbvitError

__all__ = ["parse_devices", "evaluate_on_devices"]

log = logging.getLogger(__name__)


def parse_devices(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"0,1"`` -> ``("cuda:0", "cuda:1")``; names (``cuda:2``, ``cpu``, ``mps``) are kept as given."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = tuple(f"cuda:{d.strip()}" if d.strip().isdigit() else d.strip() for d in items)
    if not out or any(not d for d in out):
        raise ConfigError(f"--devices {spec!r}: write a comma-separated list such as 0,1 or cuda:0,cuda:1")
    return out


def _worker(model: str, suite: Any, opts: Any, progress: Any, errors: Any, k: int, numerics: Any) -> None:
    """One device's share, computed with the parent's float32 precision and attention switches; its error
    (one line) goes back to the parent through ``errors``."""
    from robustbench_vit.device import apply_numerics
    from robustbench_vit.engine.runner import evaluate

    try:
        apply_numerics(numerics)
        evaluate(model, suite, opts, progress=progress)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        errors.put((k, opts.device, f"{type(e).__name__}: {' '.join(str(e).split())}"))
        raise SystemExit(1) from None


def evaluate_on_devices(model: Any, suite: Any, opts: Any, *, progress: Any = "auto") -> pd.DataFrame:
    """Split the conditions of ``evaluate(model, suite, opts)`` over ``opts.devices`` (one process each)."""
    from robustbench_vit.device import numerics_key, select_device
    from robustbench_vit.engine.preflight import refuse_fresh_processes
    from robustbench_vit.engine.runner import _make_suites, evaluate, parse_suites

    if not isinstance(model, str):
        raise ConfigError(
            "--devices needs a model reference (a name, card or entry point), not a module object"
        )
    if not opts.out:
        raise ConfigError(
            "--devices needs a results folder (out=...): the device processes meet in its files"
        )
    devices = parse_devices(opts.devices)
    built = [
        ref
        for s in _make_suites(parse_suites(suite), opts.suite_params)
        for ref, _ in s.referenced_models().values()
    ]
    refuse_fresh_processes(
        [model, *built], "--devices' processes (one fresh process per device)", "evaluate on one device here"
    )
    for d in devices:
        select_device(d)  # an unknown or absent device fails here, before any process starts
    n = len(devices)
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    errors = ctx.Queue()
    worker_progress = "off" if progress in (False, None, "off") else "log"
    procs = []
    for k, device in enumerate(devices):
        share = dataclasses.replace(opts, device=device, shard=(k, n), devices=None)
        args = (model, suite, share, worker_progress, errors, k, numerics_key())
        p = ctx.Process(target=_worker, args=args, daemon=False)
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    failed = []
    while not errors.empty():
        failed.append(errors.get())
    crashed = [(k, devices[k], f"exit code {p.exitcode}") for k, p in enumerate(procs) if p.exitcode]
    if failed or crashed:
        k, device, msg = (failed or crashed)[0]
        raise RbvitError(
            f"the process on {device} failed ({msg}); finished conditions are kept, rerun the same command to resume"
        )
    log.info("all %d device processes finished; collecting rows", n)
    return evaluate(
        model, suite, dataclasses.replace(opts, device=devices[0], devices=None), progress=progress
    )
