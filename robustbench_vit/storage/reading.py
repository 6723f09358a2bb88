"""Reading results back: every metric and per-sample row under a results folder, verified file by file
(:func:`~robustbench_vit.storage.verified_parquet.read_verified`), with when each run was last seen current
(:func:`recency`), the order every "latest value" choice follows."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from robustbench_vit.storage.store import PARTITION_COLUMNS, SAMPLE_SCHEMA, SCHEMA, SEEN_PREFIX, seen_digest
from robustbench_vit.storage.verified_parquet import KIND_KEY, read_verified

log = logging.getLogger(__name__)

__all__ = [
    "read_rows_file",
    "load_results",
    "load_samples",
    "require_results",
    "params_as_columns",
    "recency",
    "oldest_first",
    "latest_runs",
    "rows_to_frame",
]


#: columns a file must have to be read as rbvit rows (anything else is a foreign Parquet file)
_IDENTITY = ("run_id", "model", "suite", "condition")


def read_rows_file(path: Path, schema: pa.Schema = None) -> pa.Table | None:  # type: ignore[assignment]
    """One results file as a table of ``schema``; ``None`` (with a warning naming it) when it is empty,
    truncated, not Parquet, or a Parquet file of some other program."""
    schema = schema or SCHEMA
    try:
        file_schema = pq.read_schema(path)
        missing = [c for c in _IDENTITY if c in schema.names and c not in file_schema.names]
        if missing:
            log.warning("skipping %s: not an rbvit results file (no %s column)", path, ", ".join(missing))
            return None
        kind = (file_schema.metadata or {}).get(KIND_KEY, b"").decode(errors="replace")
        wanted = "samples" if schema is SAMPLE_SCHEMA else "metrics"
        if kind and kind != wanted:  # a leaderboard saved among the runs: its rows are no run's rows
            log.warning("skipping %s: an rbvit %s file, not %s rows", path, kind, wanted)
            return None
        return _plain_strings(read_verified(path, schema))
    except (OSError, pa.ArrowException, ValueError) as e:
        log.warning("skipping unreadable results file %s: %s", path, " ".join(str(e).split())[:200])
        return None


def _plain_strings(table: pa.Table) -> pa.Table:
    """Dictionary-encoded partition columns decoded to plain strings (pandas ``object``, not ``category``)."""
    for name in PARTITION_COLUMNS:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.string()))
    return table


def _in_layout(path: Path) -> bool:
    """Whether a file sits where the store writes rows: ``suite=<suite>/model=<model>/<file>.parquet``."""
    return path.parent.name.startswith("model=") and path.parent.parent.name.startswith("suite=")


def _read_folder(folder: Path, schema: pa.Schema) -> pd.DataFrame:
    found = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))
    files = [p for p in found if _in_layout(p)]
    if len(files) < len(found):  # a board or a copy saved among the runs is not a run
        outside = [p for p in found if not _in_layout(p)]
        log.warning(
            "%s: %d Parquet files outside its suite=<suite>/model=<model> folders are not read as results "
            "(e.g. %s)",
            folder,
            len(outside),
            outside[0],
        )
    tables = [t for t in (read_rows_file(f, schema) for f in files) if t is not None]
    if not tables:
        return _plain_strings(schema.empty_table()).to_pandas()
    return pa.concat_tables(tables).to_pandas()


def _seen_times(folder: Path) -> dict[str, tuple[pd.Timestamp, str | None]]:
    """``run_id -> (when it was last completed or resumed whole, the folder's file list it was seen
    with)`` from the ``_seen-*.json`` markers; a marker that fails its SHA-256 (a flipped bit, an edit, a
    copy under another name) or cannot be read is ignored with a warning: its run only loses its
    preference, never a row."""
    seen: dict[str, tuple[pd.Timestamp, str | None]] = {}
    for p in folder.rglob(f"{SEEN_PREFIX}*.json"):
        try:
            info = json.loads(p.read_text())
            run, stamp, listing = str(info["run_id"]), str(info["seen_at"]), info.get("listing")
            if listing is not None and not isinstance(listing, str):
                raise ValueError("its listing is not a string")
            if info.get("sha256") != seen_digest(p.name, run, stamp, listing):
                raise ValueError("it fails its SHA-256 (damaged, edited or copied)")
            when = pd.Timestamp(stamp)
            if when.tzinfo is None:
                raise ValueError("no time zone")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable run marker %s: %s", p, e)
            continue
        if run not in seen or when > seen[run][0]:
            seen[run] = (when, listing)
    return seen


def recency(df: pd.DataFrame) -> pd.Series:
    """When each row's run was last seen current: the later of its ``finished_at`` and its run's last
    complete or resumed evaluation (``seen_at``, added by :func:`load_results`). Every "latest value"
    choice (leaderboard, analysis, baselines) orders by this, so a run resumed for restored inputs wins
    over the rows of inputs that no longer exist."""
    if "seen_at" in df:
        return df["seen_at"].where(df["seen_at"].notna(), df["finished_at"])
    return df["finished_at"]


def oldest_first(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` ordered by :func:`recency` (then ``finished_at``), so ``keep="last"`` / ``aggfunc="last"``
    take the run seen current last."""
    return df.assign(_seen=recency(df)).sort_values(["_seen", "finished_at"]).drop(columns="_seen")


def load_results(path: str | Path = "results", *, expand_params: bool = True) -> pd.DataFrame:
    """All metric rows under a results folder (or its ``runs/`` sub-folder) as one DataFrame.

    With ``expand_params`` every key of the JSON ``params`` column becomes a column of its own
    (``fraction``, ``grid``, ``eps`` ...), so ``df.pivot_table(...)`` works directly.
    """
    path = Path(path)
    if not path.is_dir():
        from robustbench_vit.errors import DataError

        raise DataError(f"results folder not found: {path}")
    folder = path / "runs" if (path / "runs").is_dir() else path
    df = _read_folder(folder, SCHEMA)
    seen = _seen_times(folder)
    stamps = df["run_id"].map({run: when for run, (when, _) in seen.items()})
    marks = pd.to_datetime(stamps, utc=True).astype(df["finished_at"].dtype)
    df["seen_at"] = marks.where(marks.notna() & (marks > df["finished_at"]), df["finished_at"])
    df["seen_listing"] = df["run_id"].map({run: listing for run, (_, listing) in seen.items()})
    return params_as_columns(df) if expand_params else df


def require_results(path: str | Path) -> pd.DataFrame:
    """The verified rows of a results folder; an empty, foreign or wholly damaged folder is a
    :class:`DataError` (exit 4), so no existing board or report is overwritten with an empty one."""
    from robustbench_vit.errors import DataError

    rows = load_results(path, expand_params=False)
    if rows.empty:
        raise DataError(
            f"no rbvit results in {path} (no readable, verified runs/**/*.parquet); run rbvit eval first"
        )
    return rows


def params_as_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Every key of the JSON ``params`` column as a column of its own (existing columns win)."""
    if not len(df):
        return df
    params = pd.DataFrame([json.loads(p) if p else {} for p in df["params"]], index=df.index)
    params = params[[c for c in params.columns if c not in df.columns]]
    return pd.concat([df, params], axis=1)


def load_samples(path: str | Path = "results", *, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """All per-sample rows under a results folder (written with ``--save-samples``), each with its run's
    ``seen_at`` (:func:`recency` of the run's metric rows ``runs``, read from the folder unless given;
    null where they are not beside it)."""
    path = Path(path)
    folder = path / "samples" if (path / "samples").is_dir() else path
    if folder == path and (path / "runs").is_dir():  # a results folder without per-sample rows
        df = _plain_strings(SAMPLE_SCHEMA.empty_table()).to_pandas()
    else:
        df = _read_folder(folder, SAMPLE_SCHEMA)
    if runs is None and (path / "runs").is_dir():
        runs = load_results(path, expand_params=False)
    seen = {} if runs is None or runs.empty else recency(runs).groupby(runs["run_id"]).max().to_dict()
    df["seen_at"] = pd.to_datetime(df["run_id"].map(seen), utc=True)
    return df


def latest_runs(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The rows of one run per ``by`` group: the run seen current last (``seen_at``, then the run id for
    a stable choice). Per-image rows of two runs (weights or images since changed) are never mixed."""
    if df.empty:
        return df
    order = df.assign(
        _seen=df["seen_at"] if "seen_at" in df else pd.NaT,
        _by=df[by].astype(object).fillna("").astype(str).agg("|".join, axis=1),
    )
    chosen = order.sort_values(["_seen", "run_id"], na_position="first").drop_duplicates("_by", keep="last")
    keep = set(zip(chosen["_by"], chosen["run_id"]))
    return df[[k in keep for k in zip(order["_by"], order["run_id"])]]


def rows_to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    return _plain_strings(pa.Table.from_pylist(list(rows), schema=SCHEMA)).to_pandas()
