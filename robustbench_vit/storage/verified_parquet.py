"""Parquet files that vouch for their own rows: written atomically with the SHA-256 of their decoded rows
in the key-value metadata (``rbvit.sha256``), and read back only when the rows still match it.

A flipped bit in a page, an edit by hand or a truncated write changes the decoded rows (or makes the file
unreadable); either way :func:`read_verified` refuses the file, so no damaged value is ever returned. A
flip that leaves every decoded value as written is harmless by construction.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "CONTENT_KEY",
    "NAME_KEY",
    "KIND_KEY",
    "file_kind",
    "table_digest",
    "UnverifiedFile",
    "ForeignFile",
    "read_verified",
    "conform",
    "atomic_write_table",
]

#: the key-value metadata entry holding the SHA-256 of a file's decoded rows
CONTENT_KEY = b"rbvit.sha256"
#: the key-value metadata entry holding the file name a file was written under
NAME_KEY = b"rbvit.file"
#: the key-value metadata entry saying what a file holds (``metrics``, ``samples``, ``leaderboard``,
#: ``worst-case``, ``reproduce``): a board written among the runs is never read back as runs. Files of an
#: rbvit before this key have none.
KIND_KEY = b"rbvit.kind"


def file_kind(path: Path) -> str | None:
    """What an rbvit Parquet file says it holds (:data:`KIND_KEY`), ``None`` for a file without the key."""
    kind = (pq.read_schema(path).metadata or {}).get(KIND_KEY)
    return None if kind is None else kind.decode(errors="replace")


def table_digest(table: pa.Table) -> str:
    """SHA-256 of a table's decoded rows (the values a reader gets), independent of its encoding."""
    text = json.dumps(table.to_pylist(), sort_keys=True, default=str)
    return hashlib.sha256(f"{table.num_rows}\n{text}".encode()).hexdigest()


class UnverifiedFile(ValueError):
    """A results file whose rows fail (or lack) their stored SHA-256."""


class ForeignFile(ValueError):
    """An intact results file that was written under another name (copied or renamed from elsewhere)."""


def read_verified(path: Path, schema: pa.Schema | None = None, *, named: bool = False) -> pa.Table:
    """A Parquet file written by :func:`atomic_write_table`, read (with ``schema``) and checked against the
    digest of its rows; :class:`UnverifiedFile` when the rows are not what was written. With ``named``,
    a file written under another name than ``path``'s is a :class:`ForeignFile`."""
    table = pq.read_table(path, partitioning=None)  # the columns as written: what the digest covers
    meta = pq.read_schema(path).metadata or {}
    stored = meta.get(CONTENT_KEY)
    if stored is None:
        raise UnverifiedFile("it carries no content hash (written by an rbvit before 0.2, or not by rbvit)")
    if table_digest(table) != stored.decode(errors="replace"):
        raise UnverifiedFile("its rows do not match their stored SHA-256 (the file was damaged or edited)")
    written_as = meta.get(NAME_KEY)
    if named and written_as is not None and written_as.decode(errors="replace") != path.name:
        raise ForeignFile(f"it was written as {written_as.decode(errors='replace')!r}, not as {path.name!r}")
    return table if schema is None else conform(table, schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: its columns cast to the schema's types, a column the file predates (written
    by an older rbvit) as nulls, columns the schema lacks left out."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def atomic_write_table(table: pa.Table, path: Path, *, kind: str) -> None:
    """Write ``table`` to ``path`` through a temp file + rename (readers never see a partial file), with
    the SHA-256 of its rows (:func:`read_verified`) and what it holds (``kind``, :data:`KIND_KEY`) in the
    metadata. A full disk is a one-line :class:`ResultsError` naming the folder; the temp file is removed."""
    from robustbench_vit.data.filled import no_space_error
    from robustbench_vit.data.tempfiles import temp_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    meta = {
        **(table.schema.metadata or {}),
        CONTENT_KEY: table_digest(table).encode(),
        NAME_KEY: path.name.encode(),
        KIND_KEY: kind.encode(),
    }
    table = table.replace_schema_metadata(meta)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise no_space_error(e, path.parent, table.nbytes) from None
