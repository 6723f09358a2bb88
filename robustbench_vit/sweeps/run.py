"""Declarative sweeps: a TOML file names models x suites x datasets; ``rbvit sweep FILE`` plans the
cells (file format and validation: :mod:`robustbench_vit.sweeps.file`), skips those already complete
(same cell key), runs the rest locally or as Ray tasks, and
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
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from robustbench_vit.engine.progress import NullProgress, Progress
from robustbench_vit.errors import CheckpointError, ConfigError, UnknownNameError
from robustbench_vit.sweeps.file import Cell, SweepSpec, load_sweep, validate_sweep
from robustbench_vit.sweeps.markers import files_intact, marker_path, read_marker, runs_of, write_marker

__all__ = [
    "Cell",
    "SweepSpec",
    "load_sweep",
    "validate_sweep",
    "plan",
    "cell_identity",
    "run_cell",
    "run_shard",
    "run_local",
    "run_sweep",
    "CellStatus",
    "EXECUTORS",
]

log = logging.getLogger(__name__)


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


def _marker(out: str | Path, cell: Cell) -> Path:
    return marker_path(out, cell.key())


def _config_failure(out: str | Path, cell: Cell) -> str | None:
    """The recorded configuration error of this cell, if it failed on configuration with this very file."""
    path = _marker(out, cell).with_suffix(".error.json")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same_file = cell.sweep_digest and info.get("sweep_digest") == cell.sweep_digest
    return info.get("error") if info.get("kind") == "config" and same_file else None


def cell_identity(cell: Cell) -> str | None:
    """The content identity of everything a cell's numbers depend on, as it is now: its configuration, the
    model's (whole spec, weights bytes, card content, building code), the selected images' (ids, bytes,
    classes), the suite's (parameters, referenced models) and the library versions. ``None`` where that
    cannot be known without running the cell (an entry point's weights come from code; a suite reading
    images of its own per condition): such a cell always runs, and the runner reuses its finished
    conditions after checking their inputs."""
    return _identify(cell)[0]


def _identify(cell: Cell) -> tuple[str | None, str | None]:
    """``(cell_identity, the data folder's file list now)`` (see :func:`cell_identity`)."""
    from robustbench_vit.data.cache import current_identity
    from robustbench_vit.engine.runner import select_indices
    from robustbench_vit.identity import computing_key, digest
    from robustbench_vit.models.identity import model_identity
    from robustbench_vit.models.loading import resolve_spec
    from robustbench_vit.replaced_code import running_software
    from robustbench_vit.suites import make_suite

    opts = cell.options
    spec = resolve_spec(cell.model)
    suite = make_suite(cell.suite, opts.suite_params)
    if spec.source in ("entrypoint", "module") or suite.reads_other_images():
        return None, None
    _, ds = suite.open_data(opts.data, opts.dataset, opts.labels)
    indices = select_indices(ds.targets, opts, ds)
    identity = digest(
        {
            "cell": cell.key(),
            "model": model_identity(
                spec, pretrained=opts.pretrained, checkpoint=opts.checkpoint, cache_dir=opts.cache_dir
            ),
            "data": current_identity(ds, indices, Path(opts.cache_dir) if opts.cache_dir else None),
            "suite": suite.identity(opts.cache_dir),
            "software": running_software(),
            **computing_key(),
        }
    )
    return identity, ds.fingerprint or None


def _complete(out: str | Path, cell: Cell, *, mark_current: bool = False) -> bool:
    """The cell's intact marker records the content identity the cell has now (see :func:`cell_identity`),
    and every results file it wrote still holds its rows (:mod:`~robustbench_vit.sweeps.markers`). With
    ``mark_current``, the runs a complete cell wrote are recorded as seen current now (their ``_seen-``
    markers), as a resume of them would: a run of other inputs written into the folder since (an eval of an
    edited card, then restored) must not stay the one the board shows."""
    info = read_marker(out, cell.key())
    if info is None:
        return False
    recorded = info.get("identity")
    try:
        current, listing = _identify(cell)
    except Exception as e:  # noqa: BLE001 - an input that cannot be read now: run the cell, it reports
        log.debug("cannot identify %s: %s", cell.label(), e)
        return False
    if (
        current is None
        or recorded != current
        or not files_intact(out, cell.key(), info, refresh=mark_current)
    ):
        return False
    if mark_current:
        from robustbench_vit.storage.store import RunStore

        for run in info.get("runs") or []:
            try:
                RunStore(
                    out, suite=run["suite"], model=run["model"], dataset=run["dataset"], run_id=run["run_id"]
                ).mark_seen(listing)
            except (KeyError, TypeError):  # runs malformed under a valid seal (written by hand): run the cell
                return False
    return True


def plan(spec: SweepSpec, out: str | Path, *, mark_current: bool = False) -> list[CellStatus]:
    """Every cell with its state in ``out``: ``skipped`` (complete for the content its inputs have now:
    weights, card, images, labels, parameters), ``config-failed`` (failed on its configuration with this
    sweep file; not retried until the file changes), or ``todo``. ``mark_current`` (a sweep about to run,
    not a dry run) records the runs of skipped cells as seen current now."""
    statuses = []
    for c in spec.cells:
        if _complete(out, c, mark_current=mark_current):
            statuses.append(CellStatus(c, "skipped"))
        elif (error := _config_failure(out, c)) is not None:
            statuses.append(CellStatus(c, "config-failed", error=error))
        else:
            statuses.append(CellStatus(c, "todo"))
    return statuses


def _refuse_fresh_processes(spec: SweepSpec) -> None:
    """Ray's workers run the shipped code, and build timm's own network under a name this process registered
    another model under: refused before any cell runs (:func:`refuse_fresh_processes`)."""
    from robustbench_vit.engine.preflight import refuse_fresh_processes
    from robustbench_vit.suites import make_suite

    refs = []
    for c in spec.cells:
        refs.append(c.model)
        refs += [ref for ref, _ in make_suite(c.suite, c.options.suite_params).referenced_models().values()]
    refuse_fresh_processes(refs, "Ray's workers", "run the sweep with the local executor")


def run_cell(cell: Cell, out: str, progress: Progress | None = None) -> CellStatus:
    """Evaluate one cell (resumable per condition); a failure is returned, never raised."""
    from robustbench_vit.engine.runner import evaluate
    from robustbench_vit.results.figures.plots import draw_run_figures

    t0 = time.time()
    identity = _identity_now(cell)  # what the cell is computed from, taken before it runs (and after)
    try:
        df = evaluate(
            cell.model,
            cell.suite,
            dataclasses.replace(cell.options, out=out),
            progress=progress or NullProgress(),
        )
        draw_run_figures(df, out)
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
    if identity is not None and _identity_now(cell) != identity:
        # an input changed while the cell ran (a checkpoint a training job rewrote after the cell was
        # identified): its rows are keyed by what was read, but the marker must vouch for no identity
        log.warning("%s: its inputs changed while it ran; the next sweep runs it again", cell.label())
        identity = None
    body = {"cell": _describe(cell), "identity": identity, "rows": len(df), "finished": time.time()}
    write_marker(out, cell.key(), body, runs_of(df))
    _marker(out, cell).with_suffix(".error.json").unlink(missing_ok=True)
    return CellStatus(cell, "done", time.time() - t0, len(df))


def _identity_now(cell: Cell) -> str | None:
    try:
        return cell_identity(cell)
    except Exception as e:  # noqa: BLE001 - an input unreadable now: no identity to vouch for
        log.debug("cannot identify %s: %s", cell.label(), e)
        return None


def run_shard(cell: Cell, out: str, k: int, n: int) -> int:
    """Every n-th condition of a cell from the k-th (a Ray task's share); returns the rows written. A
    failure is logged, never raised: the cell's final pass (:func:`run_cell`) computes what is missing."""
    from robustbench_vit.engine.runner import evaluate

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
    from robustbench_vit.sweeps.ray_executor import run_cells_on_ray

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
    if executor == "ray":
        _refuse_fresh_processes(spec)
    out = out or spec.out
    progress = progress or NullProgress()
    planned = plan(spec, out, mark_current=True)
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
