"""Temporary files that results, caches and markers are written through, then renamed into place, and the
removal of those a killed writer left behind.

A temp file is named ``.<name>.tmp<pid>-<host>-<nonce>``: the writing process and machine (a results folder or
cache shared by the nodes of a Ray cluster holds other machines' files in flight, and containers reuse small
pids), and a nonce for writers of one file in one process. ``.<name>.tmp<pid>`` was an older rbvit's name.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from pathlib import Path

__all__ = ["temp_path", "remove_orphaned_temp_files"]

_TMP = re.compile(r"^\..+\.tmp(\d+)(?:-([0-9a-f]{8})-[0-9a-f]+)?$")
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
#: another machine's temp file this old is orphaned (its process cannot be asked)
_FOREIGN_ORPHAN_AGE_S = 24 * 3600


def temp_path(path: Path) -> Path:
    """The hidden temporary file that ``path`` is written through (then renamed onto ``path``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{_HOST}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_temp_files(folder: Path) -> int:
    """Delete ``.<name>.tmp<pid>`` files whose writing process is gone (left by a kill -9)."""
    removed = 0
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and _orphaned(p, int(m.group(1)), m.group(2)):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def _orphaned(p: Path, pid: int, host: str | None) -> bool:
    """A temp file whose writer is gone: a dead process of this machine; another machine's only when it is a
    day old (its pid means nothing here: removing it would break that machine's write in flight)."""
    if host is not None and host != _HOST:
        try:
            return time.time() - p.stat().st_mtime > _FOREIGN_ORPHAN_AGE_S
        except OSError:
            return False
    return pid != os.getpid() and not _pid_alive(pid)
