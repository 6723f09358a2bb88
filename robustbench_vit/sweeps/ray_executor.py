"""Ray executor for sweeps (optional extra: ``pip install 'robustbench_vit[ray]'``).

Each cell is one Ray task requesting ``num_gpus`` GPUs (0 on CPU machines), or with ``--shards N``
N tasks that each evaluate every N-th condition of the cell, then one short task that writes its summary. Workers write to the
shared results folder; every finished condition is its own atomically renamed file with a
deterministic name, so a task that Ray retries after a failure rewrites the same files and never
duplicates rows. Works with a local ``ray.init()`` and with ``--address`` for a running cluster
(on Slurm: start a Ray head/worker per allocation, see README).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from robustbench_vit.errors import RbvitError

__all__ = ["run_cells_on_ray"]

log = logging.getLogger(__name__)


def run_cells_on_ray(
    cells: list,
    out: str,
    cell_fn: Callable[[Any, str], Any],
    *,
    address: str | None = None,
    num_gpus: float = 0.0,
    max_retries: int = 2,
    progress: Any = None,
    shards: int = 1,
    shard_fn: Callable[..., Any] | None = None,
) -> list:
    """Run ``cell_fn(cell, out)`` for every cell as a Ray task (retried ``max_retries`` times if its worker
    dies); ``progress`` advances its ``cells`` level as tasks finish, in any order.

    With ``shards > 1`` every cell first runs as ``shards`` tasks of ``shard_fn(cell, out, k, shards)``
    (each a share of its conditions, on its own GPU); then ``cell_fn`` per cell only reads the files
    back, writes the summary and the cell's marker (and computes whatever a failed share left)."""
    try:
        import ray
    except ImportError:
        raise RbvitError("--executor ray needs Ray: pip install 'robustbench_vit[ray]'") from None

    from robustbench_vit.device import numerics_key

    # a Ray worker is a fresh interpreter: it computes with this process's precision and attention switches
    settings = numerics_key()
    cell_fn, shard_fn = _with_numerics(cell_fn, settings), shard_fn and _with_numerics(shard_fn, settings)
    # the math libraries read their environment when they start: workers started with the driver's
    options: dict[str, Any] = {"num_gpus": num_gpus, "max_retries": max_retries}
    if env := settings.get("environment"):
        options["runtime_env"] = {"env_vars": dict(env)}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        if shards > 1 and shard_fn is not None:
            share = ray.remote(**options)(shard_fn)
            ray.get([share.remote(c, out, k, shards) for c in cells for k in range(shards)])
        task = ray.remote(**options)(cell_fn)
        refs = [task.remote(c, out) for c in cells]
        pending = list(refs)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            if progress is not None:
                progress.advance("cells", len(finished))
        return list(ray.get(refs))
    finally:
        if started_here:
            ray.shutdown()


def _with_numerics(fn: Callable[..., Any], settings: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` run after :func:`~robustbench_vit.device.apply_numerics` of the driver's ``settings``."""

    def in_worker(*args: Any) -> Any:
        from robustbench_vit.device import apply_numerics

        apply_numerics(settings)
        return fn(*args)

    in_worker.__name__ = getattr(fn, "__name__", "task")
    return in_worker
