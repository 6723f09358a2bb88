"""Results on disk: long, typed Parquet rows, written atomically, one file per finished condition.

Layout under ``--out`` (default ``results/``)::

    runs/suite=<suite>/model=<model>/<dataset>-<run_id>-<condition>.parquet   metric rows
    samples/suite=<suite>/model=<model>/<dataset>-<run_id>-<condition>.parquet per-sample rows

Each file is written to a temporary name and renamed into place, so a killed run leaves only
complete files; rerunning the same command (same ``run_id``) skips every condition whose file
exists. The columns are documented in ``results/README.md`` and fixed by :data:`SCHEMA`.

Nothing read back is trusted unverified: every file carries the SHA-256 of its decoded rows in its
key-value metadata (``rbvit.sha256``), checked on every read (resume, leaderboard, compare, report).
A file that fails the check (a flipped bit, an edit by hand) or has none is a damaged file: the resume
moves it aside and recomputes the condition; readers skip it with a warning naming it.

The partition columns (``suite``, ``model``) are stored dictionary-encoded, the type the hive readers
give the ``suite=``/``model=`` folder names, so ``pandas.read_parquet("results/runs")``,
``pyarrow.dataset`` and DuckDB's ``hive_partitioning`` read the folder as one table; model names are
folder-safe by construction (:class:`ModelSpec` refuses others), so the folder value equals the column.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from robustbench_vit.data.tempfiles import remove_orphaned_temp_files, temp_path
from robustbench_vit.storage.verified_parquet import ForeignFile, atomic_write_table, read_verified

log = logging.getLogger(__name__)

__all__ = [
    "Record",
    "SCHEMA",
    "SAMPLE_SCHEMA",
    "SEEN_PREFIX",
    "ASIDE_SUFFIX",
    "move_aside",
    "seen_digest",
    "RunStore",
    "atomic_write_table",
]


@dataclass(frozen=True)
class Record:
    """One metric row: the results schema. A new column is one field here (:data:`SCHEMA` is derived).

    Built only by the runner (suites return ``(Condition, MetricValue)`` pairs); documented column by
    column in ``results/README.md``.
    """

    run_id: str
    model: str
    family: str
    arch: str
    source: str
    weights: str
    suite: str
    suite_version: int
    dataset: str
    data_root: str
    condition: str
    severity: float | None
    params: str  # JSON of the condition's parameters
    metric: str
    value: float
    n: int
    higher_is_better: bool
    source_model: str | None
    seed: int
    batch_size: int
    limit: int | None
    image_set: str
    n_images: int
    listing: str | None  # the dataset folder's file list when the run read it (ImageDataset.fingerprint)
    preprocessing: str
    input_size: int
    resize_size: int
    crop_pct: float
    interpolation: str
    crop_mode: str
    mean: str  # JSON list
    std: str  # JSON list
    preprocessing_source: str
    device: str
    dtype: str
    rbvit_version: str
    torch_version: str
    timm_version: str
    started_at: dt.datetime
    finished_at: dt.datetime
    config: str  # JSON of the whole run configuration

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ARROW = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(hint: Any) -> pa.DataType:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _ARROW[args[0] if args else hint]


#: columns that are also hive folder names: stored with the type the hive readers infer for folders
PARTITION_COLUMNS = ("suite", "model")
_PARTITION_TYPE = pa.dictionary(pa.int32(), pa.string())


def _field(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, _PARTITION_TYPE if name in PARTITION_COLUMNS else typ)


#: the Parquet schema of metric rows, derived from :class:`Record`
SCHEMA = pa.schema([_field(name, _arrow_type(hint)) for name, hint in typing.get_type_hints(Record).items()])

SAMPLE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("model", _PARTITION_TYPE),
        ("suite", _PARTITION_TYPE),
        ("dataset", pa.string()),
        ("condition", pa.string()),
        ("source_model", pa.string()),
        ("index", pa.int64()),
        ("item", pa.string()),
        ("image_sha256", pa.string()),
        ("label", pa.int64()),
        ("label_class", pa.string()),
        ("pred", pa.int64()),
        ("correct", pa.bool_()),
        ("loss", pa.float32()),
    ]
)

#: name prefix of the markers recording when a run was last completed or resumed whole
SEEN_PREFIX = "_seen-"


def seen_digest(name: str, run_id: str, seen_at: str, listing: str | None = None) -> str:
    """SHA-256 a ``_seen-`` marker carries over its file name, run id, time and the dataset folder's file
    list it was seen with (markers of rbvit before ``listing`` have none): a flipped bit or a marker copied
    under another run's name is ignored, never read as a preference."""
    tail = f"\0{listing}" if listing else ""
    return hashlib.sha256(f"{name}\0{run_id}\0{seen_at}{tail}".encode()).hexdigest()


_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def safe_name(s: str) -> str:
    """A file-system-safe, readable form of a model / condition name."""
    return _SAFE.sub("_", s).strip("_")[:120] or "_"


def probe_writable(out: str | Path) -> bool:
    """Whether results can be written to ``out`` (a folder that is a file is an error at once)."""
    from robustbench_vit.errors import ResultsError

    if Path(out).exists() and not Path(out).is_dir():
        check_writable(out)  # raises: a file where the results folder should be
    try:
        check_writable(out)
        return True
    except ResultsError:
        return False


def check_writable(out: str | Path) -> Path:
    """The results folder exists (or can be made) and takes a file; else a one-line error naming it."""
    from robustbench_vit.errors import ResultsError

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ResultsError(f"--out {root} is a file; pass a folder for the results")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".rbvit-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ResultsError(f"cannot write results to {root}: {e.strerror or e}") from None
    return root


#: the suffix of a results file moved aside (kept for inspection): no ``*.parquet`` glob matches it
ASIDE_SUFFIX = ".aside"
_LEGACY_ASIDE = re.compile(r"^_(stale|corrupt|foreign)-\d+-.*\.parquet$")


def move_aside(path: Path, kind: str) -> Path | None:
    """Rename a results file that must never be read again (``stale``: computed from other images;
    ``corrupt``; ``foreign``) to ``_<kind>-<time>-<name>.aside``. The ``_`` prefix keeps it out of pandas'
    and pyarrow's dataset readers, the suffix out of DuckDB's ``read_parquet('runs/**/*.parquet')``,
    which reads ``_``-prefixed files too. ``None`` when it is gone already (a concurrent run of the same
    condition moved it first)."""
    aside = path.with_name(f"_{kind}-{int(time.time())}-{path.name}{ASIDE_SUFFIX}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    return aside


def _rename_legacy_aside_files(folder: Path) -> None:
    """Files an older rbvit moved aside kept their ``.parquet`` suffix (DuckDB's glob reads them): rename
    them as :func:`move_aside` names them now."""
    try:
        names = [n for n in os.listdir(folder) if _LEGACY_ASIDE.match(n)]
    except OSError:
        return
    for name in names:
        try:
            os.replace(folder / name, folder / f"{name}{ASIDE_SUFFIX}")
        except OSError as e:  # a read-only folder: readers other than DuckDB's glob skip them anyway
            log.debug("cannot rename %s: %s", folder / name, e)


class RunStore:
    """The files of one run (model x suite x dataset x config) under a results folder."""

    def __init__(self, out: str | Path, *, suite: str, model: str, dataset: str, run_id: str) -> None:
        self.out = Path(out)
        self.run_id = run_id
        self.prefix = f"{safe_name(dataset)}-{run_id}"
        part = Path(f"suite={safe_name(suite)}") / f"model={safe_name(model)}"
        self.runs_dir = self.out / "runs" / part
        self.samples_dir = self.out / "samples" / part
        for d in (self.runs_dir, self.samples_dir):
            remove_orphaned_temp_files(d)
            _rename_legacy_aside_files(d)
        #: rows of finished files already read and verified by :meth:`done` in this run
        self._verified: dict[Path, list[dict[str, Any]]] = {}

    def path(self, condition_key: str, inputs: str | None = None) -> Path:
        """The file of a condition; ``inputs`` (the content identity of images the condition reads besides
        the run's, see :meth:`Suite.condition_inputs`) becomes part of its name."""
        tail = f"@{inputs[:12]}" if inputs else ""
        return self.runs_dir / f"{self.prefix}-{safe_name(condition_key)}{tail}.parquet"

    def input_variants(self, condition_key: str) -> list[str]:
        """The ``inputs`` keys of the files this run holds for a condition (their images' identities)."""
        stem = f"{self.prefix}-{safe_name(condition_key)}@"
        if not self.runs_dir.is_dir():
            return []
        return [p.name[len(stem) : -len(".parquet")] for p in self.runs_dir.glob(f"{stem}*.parquet")]

    def retire_other_inputs(self, condition_key: str, inputs: str) -> None:
        """Move aside this condition's files computed from other images (``_stale-...aside``, kept, never read)."""
        for other in self.input_variants(condition_key):
            if other != inputs[:12]:
                path = self.path(condition_key, other)
                for p in (path, self.samples_dir / path.name):  # its per-sample rows go with it
                    if p.is_file():
                        move_aside(p, "stale")
                log.info("%s was computed from other images; moved aside", path.name)

    def done(self, condition_key: str, inputs: str | None = None, *, samples: bool = False) -> bool:
        """A finished, verified file of this run exists (and, with ``samples``, its verified per-sample
        rows: a run saving them recomputes a condition whose samples file was deleted or damaged). A damaged
        one (truncated by a full disk, a flipped bit, edited by hand: its rows fail their SHA-256) is moved
        aside as ``_corrupt-<time>-<name>.aside``, and an intact one of another run (copied or renamed into
        this name: written under another name, or rows of another run id) as ``_foreign-<time>-<name>.aside``,
        each with a warning, so the condition is recomputed (:func:`move_aside`: no Parquet dataset reader or
        glob reads it)."""
        path = self.path(condition_key, inputs)
        if path in self._verified:
            return True
        if samples and self._intact(self.samples_dir / path.name, SAMPLE_SCHEMA) is None:
            return False
        table = self._intact(path, SCHEMA)
        if table is None:
            return False
        self._verified[path] = table.to_pylist()
        return True

    def _intact(self, path: Path, schema: pa.Schema) -> pa.Table | None:
        """The verified file of this run at ``path``, read as ``schema``, or ``None`` (moved aside when
        damaged or another run's, see :meth:`done`)."""
        if not path.is_file():
            return None
        try:
            table = read_verified(path, schema, named=True)
            others = sorted(set(table.column("run_id").to_pylist()) - {self.run_id})
            if others:
                raise ForeignFile(f"its rows are of run {others[0]}, not {self.run_id}")
            return table
        except (OSError, pa.ArrowException, ValueError) as e:
            if isinstance(e, FileNotFoundError):  # moved aside (or replaced) by a concurrent run meanwhile
                return None
            kind, what = (
                ("foreign", "another run's") if isinstance(e, ForeignFile) else ("corrupt", "damaged")
            )
            aside = move_aside(path, kind)
            log.warning(
                "moved %s results file %s aside to %s (%s); recomputing it",
                what,
                path,
                aside.name if aside else "(moved by a concurrent run)",
                " ".join(str(e).split())[:400],
            )
            return None

    def mark_seen(self, listing: str | None = None) -> None:
        """Record that this run was just completed or resumed whole for the inputs as they are now
        (``_seen-<dataset>-<run_id>.json``), with the dataset folder's file list ``listing`` it was seen
        with: when a folder holds runs of several contents of one model (weights overwritten, then
        restored), readers take the one seen last (:func:`recency`), not the one whose rows were written
        last. A read-only folder is left as it is."""
        path = self.runs_dir / f"{SEEN_PREFIX}{self.prefix}.json"
        tmp = temp_path(path)
        when = dt.datetime.now(dt.timezone.utc).isoformat()
        try:
            tmp.write_text(
                json.dumps(
                    {
                        "run_id": self.run_id,
                        "seen_at": when,
                        "listing": listing,
                        "sha256": seen_digest(path.name, self.run_id, when, listing),
                    }
                )
            )
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.debug("cannot record that run %s was seen: %s", self.run_id, e)

    def read(self, condition_key: str, inputs: str | None = None) -> list[dict[str, Any]]:
        """The rows of a finished condition (read once: :meth:`done` keeps what it verified)."""
        path = self.path(condition_key, inputs)
        if path in self._verified:
            return self._verified[path]
        return read_verified(path, SCHEMA).to_pylist()

    def write_if_changed(
        self,
        condition_key: str,
        rows: list[dict[str, Any]],
        ignore: tuple[str, ...] = ("started_at", "finished_at"),
    ) -> Path | None:
        """Write ``rows`` unless the file already holds the same rows (timestamps aside): a rerun over
        complete results then changes nothing, and works on a read-only folder."""
        path = self.path(condition_key)
        if path.is_file():
            try:
                old = [{k: v for k, v in r.items() if k not in ignore} for r in self.read(condition_key)]
                new = pa.Table.from_pylist(rows, schema=SCHEMA).to_pylist()
                if old == [{k: v for k, v in r.items() if k not in ignore} for r in new]:
                    return None
            except (OSError, pa.ArrowException, ValueError):
                pass
        return self.write(condition_key, rows)

    def write(
        self,
        condition_key: str,
        rows: list[dict[str, Any]],
        samples: dict[str, Any] | None = None,
        inputs: str | None = None,
    ) -> Path:
        """Write samples first, then the metric rows: a metric file implies its samples exist."""
        if any(r["run_id"] != self.run_id for r in rows):
            raise RuntimeError(f"rows of another run written into run {self.run_id}")
        path = self.path(condition_key, inputs)
        if samples is not None:
            atomic_write_table(
                pa.Table.from_pydict(samples, schema=SAMPLE_SCHEMA),
                self.samples_dir / path.name,
                kind="samples",
            )
        atomic_write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, kind="metrics")
        self._verified.pop(path, None)
        if inputs:
            self.retire_other_inputs(condition_key, inputs)
        return path
