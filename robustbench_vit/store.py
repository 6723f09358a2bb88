"""Results on disk: long, typed Parquet rows, written atomically, one file per finished condition.

Layout under ``--out`` (default ``results/``)::

    runs/suite=<suite>/model=<model>/<dataset>-<run_id>-<condition>.parquet   metric rows
    samples/suite=<suite>/model=<model>/<dataset>-<run_id>-<condition>.parquet per-sample rows

Each file is written to a temporary name and renamed into place, so a killed run leaves only
complete files; rerunning the same command (same ``run_id``) skips every condition whose file
exists. The columns are documented in ``results/README.md`` and fixed by :data:`SCHEMA`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "SAMPLE_SCHEMA", "RunStore", "load_results", "load_samples", "atomic_write_table"]

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("family", pa.string()), ("arch", pa.string()),
    ("source", pa.string()), ("weights", pa.string()), ("suite", pa.string()), ("suite_version", pa.int64()),
    ("dataset", pa.string()), ("data_root", pa.string()), ("condition", pa.string()),
    ("severity", pa.float64()), ("params", pa.string()), ("metric", pa.string()), ("value", pa.float64()),
    ("n", pa.int64()), ("higher_is_better", pa.bool_()), ("source_model", pa.string()), ("seed", pa.int64()),
    ("batch_size", pa.int64()), ("limit", pa.int64()), ("image_set", pa.string()), ("n_images", pa.int64()),
    ("preprocessing", pa.string()),
    ("input_size", pa.int64()), ("resize_size", pa.int64()), ("crop_pct", pa.float64()),
    ("interpolation", pa.string()), ("crop_mode", pa.string()), ("mean", pa.string()), ("std", pa.string()),
    ("preprocessing_source", pa.string()), ("device", pa.string()), ("dtype", pa.string()),
    ("rbvit_version", pa.string()), ("torch_version", pa.string()), ("timm_version", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
    ("config", pa.string()),
])  # fmt: skip

SAMPLE_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("suite", pa.string()), ("dataset", pa.string()),
    ("condition", pa.string()), ("source_model", pa.string()), ("index", pa.int64()), ("item", pa.string()),
    ("label", pa.int64()), ("pred", pa.int64()), ("correct", pa.bool_()), ("loss", pa.float32()),
])  # fmt: skip

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def safe_name(s: str) -> str:
    """A file-system-safe, readable form of a model / condition name."""
    return _SAFE.sub("_", s).strip("_")[:120] or "_"


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temp file + rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    """The files of one run (model x suite x dataset x config) under a results folder."""

    def __init__(self, out: str | Path, *, suite: str, model: str, dataset: str, run_id: str) -> None:
        self.out = Path(out)
        self.prefix = f"{safe_name(dataset)}-{run_id}"
        part = Path(f"suite={safe_name(suite)}") / f"model={safe_name(model)}"
        self.runs_dir = self.out / "runs" / part
        self.samples_dir = self.out / "samples" / part

    def path(self, condition_key: str) -> Path:
        return self.runs_dir / f"{self.prefix}-{safe_name(condition_key)}.parquet"

    def done(self, condition_key: str) -> bool:
        return self.path(condition_key).is_file()

    def read(self, condition_key: str) -> list[dict[str, Any]]:
        return pq.read_table(self.path(condition_key)).to_pylist()

    def write(self, condition_key: str, rows: list[dict[str, Any]],
              samples: dict[str, Any] | None = None) -> Path:  # fmt: skip
        """Write samples first, then the metric rows: a metric file implies its samples exist."""
        if samples is not None:
            spath = self.samples_dir / f"{self.prefix}-{safe_name(condition_key)}.parquet"
            atomic_write_table(pa.Table.from_pydict(samples, schema=SAMPLE_SCHEMA), spath)
        path = self.path(condition_key)
        atomic_write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
        return path


def _read_folder(folder: Path, schema: pa.Schema) -> pd.DataFrame:
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        return schema.empty_table().to_pandas()
    tables = [pq.read_table(f, schema=schema, partitioning=None) for f in files]
    return pa.concat_tables(tables).to_pandas()


def load_results(path: str | Path = "results", *, expand_params: bool = True) -> pd.DataFrame:
    """All metric rows under a results folder (or its ``runs/`` sub-folder) as one DataFrame.

    With ``expand_params`` every key of the JSON ``params`` column becomes a column of its own
    (``fraction``, ``grid``, ``eps`` ...), so ``df.pivot_table(...)`` works directly.
    """
    path = Path(path)
    folder = path / "runs" if (path / "runs").is_dir() else path
    df = _read_folder(folder, SCHEMA)
    if expand_params and len(df):
        params = pd.DataFrame([json.loads(p) if p else {} for p in df["params"]], index=df.index)
        params = params[[c for c in params.columns if c not in df.columns]]
        df = pd.concat([df, params], axis=1)
    return df


def load_samples(path: str | Path = "results") -> pd.DataFrame:
    """All per-sample rows under a results folder (written with ``--save-samples``)."""
    path = Path(path)
    folder = path / "samples" if (path / "samples").is_dir() else path
    return _read_folder(folder, SAMPLE_SCHEMA)


def rows_to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA).to_pandas()
