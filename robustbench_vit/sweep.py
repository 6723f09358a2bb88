"""Declarative sweeps: a TOML file names models x suites x datasets; ``rbvit sweep FILE`` plans the
cells, skips those already complete (same cell key), runs the rest locally or as Ray tasks, and
never crashes on a failing cell. A cell that failed at run time is retried on the next run; one that
failed on its configuration (unknown name, bad parameter, bad checkpoint) is reported as
``config-failed`` and not retried until the sweep file changes.

Example (``sweeps/ci.toml``)::

    [sweep]
    data = "../shared/data/imagenet-samples/val"
    limit = 100
    seeds = [0]
    models = [
        "efficientnet_lite0",
        { ref = "timm:test_vit", pretrained = false },
        # per-model overrides: batch size, dtype, and parameters per suite name
        { ref = "deit_base_patch16_384", batch_size = 32, params = { occlusion = { grid = "24" } } },
    ]

    [[suite]]
    name = "occlusion"
    params = { fractions = [0.0, 0.5] }
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from robustbench_vit import __version__
from robustbench_vit.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from robustbench_vit.progress import NullProgress, Progress
from robustbench_vit.rows import SPLIT_OPTIONS
from robustbench_vit.runner import RunOptions

__all__ = [
    "Cell",
    "SweepSpec",
    "load_sweep",
    "validate_sweep",
    "plan",
    "run_cell",
    "run_shard",
    "run_local",
    "run_sweep",
    "CellStatus",
    "EXECUTORS",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One (model x suite x dataset x seed) evaluation of a sweep: what :func:`runner.evaluate` is called with
    (the results folder is the sweep's, set when the cell runs)."""

    model: str
    suite: str
    options: RunOptions
    #: sha256 of the sweep file the cell came from (not part of the key: a config failure is retried
    #: only when the file changes)
    sweep_digest: str = field(default="", compare=False)

    def key(self) -> str:
        """Hash of the cell's full configuration and the rbvit version (its marker file's name)."""
        skip = ("out", *SPLIT_OPTIONS)
        opts = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in skip}
        blob = json.dumps(
            {"model": self.model, "suite": self.suite, "options": opts, "rbvit": __version__},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        data = self.options.data
        return f"{self.model} | {self.suite} | {Path(data).name if data else 'default'} | seed {self.options.seed}"


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    cells: tuple[Cell, ...]
    out: str
    digest: str = ""


Status = Literal["done", "skipped", "failed", "config-failed", "todo"]
#: errors that rerunning the same configuration cannot fix
CONFIG_ERRORS = (ConfigError, UnknownNameError, CheckpointError)


@dataclass
class CellStatus:
    cell: Cell
    status: Status
    seconds: float = 0.0
    rows: int = 0
    error: str = ""


#: runs one cell into a results folder (optionally showing progress) and reports, never raises (:func:`run_cell`)
CellFn = Callable[..., CellStatus]


@dataclass(frozen=True)
class ModelEntry:
    """One model of a sweep with its per-model overrides."""

    ref: str
    pretrained: bool = True
    batch_size: int | None = None
    dtype: str | None = None
    #: suite name -> parameters that override the [[suite]] params for this model
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


_MODEL_KEYS = {"ref": str, "pretrained": bool, "batch_size": int, "dtype": str, "params": dict}


def _model_entry(e: Any, where: str) -> ModelEntry:
    if isinstance(e, str):
        return ModelEntry(e)
    if not (isinstance(e, dict) and isinstance(e.get("ref"), str)):
        raise ConfigError(f"{where}: each model is a name or {{ ref = ..., pretrained = ... }}, got {e!r}")
    _check_table(e, _MODEL_KEYS, f"{where} model {e['ref']!r}")
    params = e.get("params", {})
    for suite, p in params.items():
        if not isinstance(p, dict):
            raise ConfigError(
                f"{where} model {e['ref']!r}: params.{suite} must be a table of suite parameters"
            )
    return ModelEntry(e["ref"], e.get("pretrained", True), e.get("batch_size"), e.get("dtype"), params)


def _expand_models(entries: list[Any], base: Path, where: str) -> list[ModelEntry]:
    from robustbench_vit.models.zoo import MODELS

    out: list[ModelEntry] = []
    for raw in entries:
        e = _model_entry(raw, where)
        ref = e.ref
        if ref.endswith(".json"):
            p = ref if Path(ref).is_absolute() else str(base / ref)
            matches = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
            if not matches:
                raise ConfigError(f"sweep model {ref!r} matches no model card")
            out += [dataclasses.replace(e, ref=m) for m in matches]
        elif any(ch in ref for ch in "*?[") and ":" not in ref:
            names = [n for n in MODELS.names() if fnmatch.fnmatch(n, ref)]
            if not names:
                raise ConfigError(f"sweep model pattern {ref!r} matches no zoo model")
            out += [dataclasses.replace(e, ref=n) for n in names]
        else:
            out.append(e)
    return out


_TOP_KEYS = {
    "out": str,
    "data": str,
    "dataset": str,
    "limit": int,
    "seeds": list,
    "batch_size": int,
    "dtype": str,
    "device": str,
    "models": list,
    "save_samples": bool,
}
#: a [[suite]] may override the per-cell keys of [sweep]
_SUITE_KEYS = {
    "name": str,
    "params": dict,
    **{k: t for k, t in _TOP_KEYS.items() if k not in ("out", "device", "models")},
}


def _check_table(table: Any, allowed: dict[str, type], where: str) -> None:
    """Unknown keys (with "did you mean") and wrong value types in one TOML table are one-line errors."""
    import difflib

    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(allowed))})"
            raise ConfigError(f"{where} has no key {key!r}{hint}")
        typ = allowed[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{where}: {key} must be {'an' if typ is int else 'a'} {typ.__name__}, got {value!r}"
            )
        if typ is int and value < (0 if key == "seed" else 1):
            raise ConfigError(f"{where}: {key} must be >= 1, got {value}")
    for seed in table.get("seeds", []):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where}: seeds must be integers >= 0, got {seed!r}")


def validate_sweep(spec: SweepSpec) -> None:
    """Every cell's model name, suite, parameters and data folder, checked before any cell runs
    (no model is built and no image read): a typo fails the whole sweep at once, --dry-run included."""
    from robustbench_vit.models.loading import resolve_spec
    from robustbench_vit.suites import make_suite

    seen: set[str] = set()
    for cell in spec.cells:
        if cell.model not in seen:
            resolve_spec(cell.model)
            seen.add(cell.model)
        make_suite(cell.suite, cell.options.suite_params)
        cell.options.validate()
        data = cell.options.data
        if data and not Path(data).expanduser().exists():
            raise DataError(f"sweep {spec.path}: data folder not found: {data}")


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse a sweep TOML into its cells (relative paths are relative to the file's folder's parent
    project root, i.e. the current working directory, as on the command line)."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"sweep file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - {"sweep", "suite"})
    if unknown:
        raise ConfigError(
            f"sweep file {path}: unknown section(s) {', '.join(unknown)} (use [sweep] and [[suite]])"
        )
    top = raw.get("sweep", {})
    suites = raw.get("suite", [])
    _check_table(top, _TOP_KEYS, f"{path} [sweep]")
    if not isinstance(suites, list):
        raise ConfigError(f"sweep file {path}: write suites as [[suite]] tables")
    for i, s in enumerate(suites):
        _check_table(s, _SUITE_KEYS, f"{path} [[suite]] #{i + 1}")
    if not top.get("models") or not suites:
        raise ConfigError(f"sweep file {path} needs [sweep] models = [...] and at least one [[suite]]")
    models = _expand_models(top["models"], Path.cwd(), f"sweep file {path}")
    suite_names = {s.get("name") for s in suites}
    for m in models:
        extra = sorted(set(m.params) - suite_names)
        if extra:
            raise ConfigError(
                f"sweep file {path}: model {m.ref!r} sets params for {extra[0]!r}, which is not a [[suite]] here"
            )
    digest = hashlib.sha256(text.encode()).hexdigest()
    cells = []
    for s in suites:
        if "name" not in s:
            raise ConfigError(f"every [[suite]] in {path} needs a name")
        for m in models:
            params = {**s.get("params", {}), **m.params.get(s["name"], {})}
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
            for seed in s.get("seeds", top.get("seeds", [0])):
                opts = RunOptions(
                    data=s.get("data", top.get("data")),
                    dataset=s.get("dataset", top.get("dataset")),
                    limit=s.get("limit", top.get("limit")),
                    seed=int(seed),
                    batch_size=int(m.batch_size or s.get("batch_size", top.get("batch_size", 64))),
                    dtype=m.dtype or s.get("dtype", top.get("dtype", "fp32")),
                    device=top.get("device"),
                    pretrained=m.pretrained,
                    save_samples=bool(s.get("save_samples", top.get("save_samples", False))),
                    suite_params=params,
                )
                cells.append(Cell(model=m.ref, suite=s["name"], options=opts, sweep_digest=digest))
    spec = SweepSpec(path, tuple(cells), str(top.get("out", "results")), digest)
    validate_sweep(spec)
    return spec


def _marker(out: str | Path, cell: Cell) -> Path:
    return Path(out) / "cells" / f"{cell.key()}.json"


def _config_failure(out: str | Path, cell: Cell) -> str | None:
    """The recorded configuration error of this cell, if it failed on configuration with this very file."""
    path = _marker(out, cell).with_suffix(".error.json")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same_file = cell.sweep_digest and info.get("sweep_digest") == cell.sweep_digest
    return info.get("error") if info.get("kind") == "config" and same_file else None


def plan(spec: SweepSpec, out: str | Path) -> list[CellStatus]:
    """Every cell with its state in ``out``: ``skipped`` (complete), ``config-failed`` (failed on its
    configuration with this sweep file; not retried until the file changes), or ``todo``."""
    statuses = []
    for c in spec.cells:
        if _marker(out, c).is_file():
            statuses.append(CellStatus(c, "skipped"))
        elif (error := _config_failure(out, c)) is not None:
            statuses.append(CellStatus(c, "config-failed", error=error))
        else:
            statuses.append(CellStatus(c, "todo"))
    return statuses


def run_cell(cell: Cell, out: str, progress: Progress | None = None) -> CellStatus:
    """Evaluate one cell (resumable per condition); a failure is returned, never raised."""
    from robustbench_vit.runner import evaluate

    t0 = time.time()
    try:
        df = evaluate(
            cell.model,
            cell.suite,
            dataclasses.replace(cell.options, out=out),
            progress=progress or NullProgress(),
        )
    except Exception as e:  # a failing cell is reported, not fatal
        msg = f"{type(e).__name__}: {e}"
        kind = "config" if isinstance(e, CONFIG_ERRORS) else "run"
        err = _marker(out, cell).with_suffix(".error.json")
        err.parent.mkdir(parents=True, exist_ok=True)
        err.write_text(
            json.dumps(
                {
                    "cell": _describe(cell),
                    "kind": kind,
                    "sweep_digest": cell.sweep_digest,
                    "error": msg,
                    "traceback": traceback.format_exc(),
                },
                indent=1,
                default=str,
            )
        )
        return CellStatus(cell, "config-failed" if kind == "config" else "failed", time.time() - t0, 0, msg)
    marker = _marker(out, cell)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.tmp{os.getpid()}")
    tmp.write_text(
        json.dumps({"cell": _describe(cell), "rows": len(df), "finished": time.time()}, default=str)
    )
    os.replace(tmp, marker)
    marker.with_suffix(".error.json").unlink(missing_ok=True)
    return CellStatus(cell, "done", time.time() - t0, len(df))


def run_shard(cell: Cell, out: str, k: int, n: int) -> int:
    """Every n-th condition of a cell from the k-th (a Ray task's share); returns the rows written. A
    failure is logged, never raised: the cell's final pass (:func:`run_cell`) computes what is missing."""
    from robustbench_vit.runner import evaluate

    try:
        opts = dataclasses.replace(cell.options, out=out, shard=(k, n))
        return len(evaluate(cell.model, cell.suite, opts, progress=False))
    except Exception as e:  # noqa: BLE001 - the final pass reports it
        log.warning("shard %d/%d of %s failed: %s: %s", k, n, cell.label(), type(e).__name__, e)
        return 0


def _describe(cell: Cell) -> dict[str, Any]:
    return {"model": cell.model, "suite": cell.suite, "options": dataclasses.asdict(cell.options)}


def run_local(
    cells: list[Cell], out: str, cell_fn: CellFn, *, progress: Progress | None = None, **_: Any
) -> list[CellStatus]:
    """Run cells one after the other in this process (their conditions and images show in ``progress``)."""
    progress = progress or NullProgress()
    statuses = []
    for c in cells:
        statuses.append(cell_fn(c, out, progress))  # type: ignore[call-arg]
        progress.advance("cells")
    return statuses


def _run_ray(cells: list[Cell], out: str, cell_fn: CellFn, **kw: Any) -> list[CellStatus]:
    from robustbench_vit.ray_executor import run_cells_on_ray

    return run_cells_on_ray(cells, out, cell_fn, **kw)


#: executor name -> (cells, results folder, cell function, options) -> statuses
EXECUTORS: dict[str, Callable[..., list[CellStatus]]] = {"local": run_local, "ray": _run_ray}


def run_sweep(
    spec: SweepSpec,
    out: str | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    num_gpus: float = 0.0,
    max_retries: int = 2,
    progress: Progress | None = None,
    shards: int = 1,
) -> list[CellStatus]:
    """Run every cell that is neither complete nor failed on its configuration; one status per cell.

    ``shards > 1`` (Ray) splits each cell's conditions over that many tasks, so one cell of many
    conditions (ImageNet-C: 75) spreads over the cluster's GPUs; a last task per cell writes its summary.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} not in {tuple(EXECUTORS)}")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"--shards must be an integer >= 1, got {shards!r}")
    if shards > 1 and executor != "ray":
        raise ConfigError("--shards splits cells over Ray tasks: use it with --executor ray")
    out = out or spec.out
    progress = progress or NullProgress()
    planned = plan(spec, out)
    statuses = [st for st in planned if st.status != "todo"]
    todo = [st.cell for st in planned if st.status == "todo"]
    progress.start("cells", f"sweep {spec.path.name} ({executor})", len(todo))
    extra = {"shards": shards, "shard_fn": run_shard} if shards > 1 else {}
    statuses += EXECUTORS[executor](
        todo,
        out,
        run_cell,
        address=address,
        num_gpus=num_gpus,
        max_retries=max_retries,
        progress=progress,
        **extra,
    )
    order = {c.key(): i for i, c in enumerate(spec.cells)}
    return sorted(statuses, key=lambda s: order[s.cell.key()])
