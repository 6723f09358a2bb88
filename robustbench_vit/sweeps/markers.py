"""A sweep cell's completion marker (``cells/<key>.json``): what the cell was computed from, the runs it
wrote and the results files those runs hold, vouched for by a SHA-256 over its content and name.

A sweep skips a cell only when its marker is intact (a flipped bit, an edit by hand, or a marker copied
under another cell's name is no marker) and every results file it lists still holds the rows the cell
wrote: a file deleted, truncated or damaged since makes the cell run again, so the runner's resume
recomputes what is missing instead of the board silently lacking it. A file is checked by its stat tuple
(``(size, mtime_ns, ctime_ns, inode)``, which any write changes; trusted only when the file had settled for
2 s when it was recorded, as git trusts its index) and otherwise by reading it back against its rows'
SHA-256 (the marker's stat tuple is then brought up to date, so a copied results folder is read once, not
on every sweep).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from robustbench_vit.data import digests
from robustbench_vit.data.tempfiles import temp_path
from robustbench_vit.storage.verified_parquet import CONTENT_KEY, read_verified

__all__ = ["marker_path", "write_marker", "read_marker", "files_intact", "runs_of"]

log = logging.getLogger(__name__)


def marker_path(out: str | Path, cell_key: str) -> Path:
    return Path(out) / "cells" / f"{cell_key}.json"


def _seal(name: str, body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(f"{name}\0{text}".encode()).hexdigest()


def _write(path: Path, body: dict[str, Any]) -> None:
    body = json.loads(json.dumps(body, default=str))  # what a reader gets back, sealed as such
    tmp = temp_path(path)
    tmp.write_text(json.dumps({**body, "sha256": _seal(path.name, body)}))
    os.replace(tmp, path)


def runs_of(df: Any) -> list[dict[str, str]]:
    """``suite``, ``model``, ``dataset`` and ``run_id`` of each run whose rows ``df`` holds."""
    cols = ["suite", "model", "dataset", "run_id"]
    if df is None or not len(df) or not set(cols) <= set(df.columns):
        return []
    return [dict(zip(cols, map(str, r))) for r in df[cols].drop_duplicates().itertuples(index=False)]


def _run_files(out: Path, runs: list[dict[str, str]]) -> list[Path]:
    """The results files (metric rows and per-sample rows) of ``runs`` under ``out``."""
    from robustbench_vit.storage.store import RunStore

    files: list[Path] = []
    for run in runs:
        store = RunStore(
            out, suite=run["suite"], model=run["model"], dataset=run["dataset"], run_id=run["run_id"]
        )
        for folder in (store.runs_dir, store.samples_dir):
            if folder.is_dir():
                files += sorted(folder.glob(f"{store.prefix}-*.parquet"))
    return files


def _content_sha(path: Path) -> str:
    """The rows' SHA-256 a results file carries, after checking its rows against it (raises if they fail)."""
    import pyarrow.parquet as pq

    read_verified(path, named=True)
    return (pq.read_schema(path).metadata or {})[CONTENT_KEY].decode()


def _entry(path: Path, sha: str) -> dict[str, Any]:
    return {"sha256": sha, "stat": list(digests.stat_tuple(path.stat())), "checked_ns": time.time_ns()}


def _unchanged(path: Path, entry: dict[str, Any]) -> bool:
    """The file's stat tuple is the one recorded, and the file had settled then (no write in the same tick)."""
    st = list(digests.stat_tuple(path.stat()))
    settled = isinstance(entry.get("checked_ns"), int) and entry["checked_ns"] - st[2] >= digests.SETTLED_NS
    return settled and st == entry.get("stat")


def write_marker(out: str | Path, cell_key: str, body: dict[str, Any], runs: list[dict[str, str]]) -> None:
    """Record a finished cell: ``body`` (its description and identity), the runs it wrote (marked seen
    current again whenever a sweep skips the cell) and each of their results files (its name relative to
    ``out``, the SHA-256 of its rows, its stat tuple)."""
    out = Path(out)
    files = {}
    for p in _run_files(out, runs):
        try:
            files[p.relative_to(out).as_posix()] = _entry(p, _content_sha(p))
        except (OSError, KeyError, pa.ArrowException, ValueError) as e:  # the next sweep runs the cell again
            log.warning("results file %s does not read back (%s); its cell will run again", p, e)
            files[p.relative_to(out).as_posix()] = {"sha256": "", "stat": None, "checked_ns": 0}
    path = marker_path(out, cell_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, {**body, "runs": runs, "files": files})


def read_marker(out: str | Path, cell_key: str) -> dict[str, Any] | None:
    """The cell's marker, or ``None`` when there is none, or it is damaged, edited, copied from another
    cell's name or written by an rbvit that recorded no files (the cell then runs; its finished conditions
    are resumed, not recomputed)."""
    path = marker_path(out, cell_key)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("sweep marker %s cannot be read (%s); running its cell again", path, e)
        return None
    if not isinstance(info, dict) or "files" not in info:
        return None
    body = {k: v for k, v in info.items() if k != "sha256"}
    if info.get("sha256") != _seal(path.name, body):
        log.warning(
            "sweep marker %s does not match its SHA-256 (damaged or edited); running its cell again", path
        )
        return None
    return info


def files_intact(out: str | Path, cell_key: str, info: dict[str, Any], *, refresh: bool = True) -> bool:
    """Every results file the marker lists holds the rows the cell wrote (see the module docstring); with
    ``refresh`` (not in a dry run, which writes nothing) stat tuples read back are recorded anew."""
    out = Path(out)
    files = info.get("files")
    if not isinstance(files, dict):
        return False
    refreshed = False
    for name, entry in files.items():
        path = out / name
        try:
            if _unchanged(path, entry):
                continue
            if _content_sha(path) != entry.get("sha256"):
                raise ValueError("it holds other rows than the cell wrote")
            files[name] = _entry(path, entry["sha256"])
        except FileNotFoundError:
            log.warning("results file %s of a finished sweep cell is gone; running the cell again", path)
            return False
        except (OSError, KeyError, pa.ArrowException, ValueError) as e:
            log.warning(
                "results file %s of a finished sweep cell fails its check (%s); running the cell again",
                path,
                e,
            )
            return False
        refreshed = True
    if refreshed and refresh:  # read once after a copy or a touch, then trusted by its stat tuple again
        try:
            _write(marker_path(out, cell_key), {k: v for k, v in info.items() if k != "sha256"})
        except OSError as e:  # a read-only folder: checked by reading again next time
            log.debug("cannot refresh sweep marker of %s: %s", cell_key, e)
    return True
