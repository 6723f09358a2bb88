"""The decoded-image cache is verified, not trusted: truncation, flipped bytes, a full disk."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import pytest

from robustbench_vit.data.cache import ImageCache
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.data.registry import open_dataset
from tests.helpers import CIFAR10_TEST, error_lines, needs_cifar

DC = DataConfig((3, 32, 32), 1.0, "bilinear", (0.5,) * 3, (0.5,) * 3)
IDX = np.arange(0, 10000, 100)  # 100 images spread over the whole file


@pytest.fixture()
def cache_dir(tmp_path):
    return tmp_path / "cache"


def _fresh(cache_dir):
    _, ds = open_dataset(CIFAR10_TEST)
    return ImageCache(ds, DC, cache_dir)


@needs_cifar
def test_truncated_cache_file_is_refilled_not_zero_filled(cache_dir):
    c = _fresh(cache_dir)
    c.ensure(IDX)
    want = np.array(c.images[IDX])
    path = c.dir / "images.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)  # rows past the middle are gone, their filled flags say otherwise
    c2 = _fresh(cache_dir)
    lost = c2.missing(IDX)
    intact = (size // 2 - c2.store.offset) // c2.store.row_bytes
    assert len(lost) == (IDX >= intact).sum() > 40
    assert c2.ensure(IDX) == len(lost)
    assert np.array_equal(np.array(c2.images[IDX]), want) and c2.images[IDX].max() > 0


@needs_cifar
def test_flipped_bytes_fail_the_checksum_and_are_decoded_again(cache_dir):
    c = _fresh(cache_dir)
    c.ensure(IDX)
    want = np.array(c.images[IDX])
    path = c.dir / "images.npy"
    offset = c.store.offset + int(IDX[7]) * c.store.row_bytes + 100
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    c2 = _fresh(cache_dir)
    assert list(c2.missing(IDX)) == [IDX[7]]
    assert c2.ensure(IDX) == 1 and np.array_equal(np.array(c2.images[IDX]), want)


def _limited(limit_bytes: int):
    def preexec():  # file-size limit: writes past it fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


def _eval_cmd(card, tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        sys.executable,
        "-m",
        "robustbench_vit.cli.commands",
        "eval",
        "-m",
        str(card),
        "-s",
        "clean",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "20",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]


def _one_line_failure(r) -> str:  # type: ignore[no-untyped-def]
    lines = error_lines(r.stderr)
    assert r.returncode == 8 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@needs_cifar
def test_full_disk_for_the_cache_is_one_line(tmp_path, cifar_card):
    r = subprocess.run(
        _eval_cmd(cifar_card, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limited(1 << 20),
    )
    line = _one_line_failure(r)
    assert "no space left" in line and "cache" in line


@needs_cifar
def test_full_disk_for_the_results_is_one_line_and_leaves_no_partial_file(tmp_path, cifar_card):
    import robustbench_vit as rbvit

    # fill the cache (and the weights-hash memo) without a limit, then write results under one
    rbvit.evaluate(
        str(cifar_card),
        "clean",
        data=str(CIFAR10_TEST),
        limit=20,
        out=None,
        cache_dir=str(tmp_path / "cache"),
    )
    r = subprocess.run(
        _eval_cmd(cifar_card, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limited(4096),
    )
    assert "no space left" in _one_line_failure(r)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_non_exclusive_fills_of_disjoint_rows_run_in_parallel_and_merge(tmp_path):
    """AutoAttack's shards: two openers (as two processes) fill disjoint rows at the same time; each
    compute waits for the other to start, which deadlocks if a fill held the lock while computing."""
    import threading

    from robustbench_vit.data.filled import FilledArray

    started = [threading.Event(), threading.Event()]

    def filler(k: int) -> None:
        store = FilledArray(tmp_path / "outcomes", (8, 3), np.int64)

        def compute(ix: np.ndarray) -> np.ndarray:
            started[k].set()
            assert started[1 - k].wait(timeout=20), "the other fill never started: fills were serialised"
            return np.stack([ix * 10 + j for j in range(3)], 1)

        store.fill(np.arange(k, 8, 2), compute, chunk=4, exclusive=False)

    threads = [threading.Thread(target=filler, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    store = FilledArray(tmp_path / "outcomes", (8, 3), np.int64)
    assert store.filled.all() and len(store.missing(np.arange(8))) == 0
    np.testing.assert_array_equal(
        store.rows(np.arange(8)), np.stack([np.arange(8) * 10 + j for j in range(3)], 1)
    )


@needs_cifar
def test_temp_files_of_killed_fills_are_removed(cache_dir):
    c = _fresh(cache_dir)
    c.ensure(IDX[:5])
    dead = 2**22 + 12345  # no such process
    orphans = [c.dir / f".filled.npy.tmp{dead}", c.dir / f".checksums.npy.tmp{dead}"]
    for p in orphans:
        p.write_bytes(b"half a mask")
    mine = c.dir / f".sources.npy.tmp{__import__('os').getpid()}"
    mine.write_bytes(b"in flight")
    _fresh(cache_dir)
    assert not any(p.exists() for p in orphans) and mine.exists()
    mine.unlink()


def test_temp_files_of_other_machines_are_left_to_them(tmp_path, monkeypatch):
    """A results folder or cache shared by a Ray cluster's nodes holds other machines' files in flight, whose
    pids mean nothing here (containers reuse small pids): only this machine's dead writers' files are
    removed, another machine's only when a day old; two writers of one file never share a temp name."""
    import os
    import time

    from robustbench_vit.data import tempfiles
    from robustbench_vit.data.tempfiles import remove_orphaned_temp_files, temp_path

    dead = 2**22 + 12345  # no such process here
    target = tmp_path / "x.parquet"
    mine = temp_path(target)
    assert mine.name.startswith(f".x.parquet.tmp{os.getpid()}-") and mine != temp_path(target)
    here_dead = tmp_path / mine.name.replace(f"tmp{os.getpid()}-", f"tmp{dead}-")
    other_host = "0" * 8 if tempfiles._HOST != "0" * 8 else "1" * 8
    elsewhere = tmp_path / f".y.parquet.tmp{dead}-{other_host}-abcd1234"
    elsewhere_old = tmp_path / f".z.parquet.tmp{dead}-{other_host}-abcd1234"
    legacy_dead = tmp_path / f".w.parquet.tmp{dead}"
    for p in (mine, here_dead, elsewhere, elsewhere_old, legacy_dead):
        p.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(elsewhere_old, (day_ago, day_ago))
    assert remove_orphaned_temp_files(tmp_path) == 3
    assert mine.exists() and elsewhere.exists()
    assert not (here_dead.exists() or elsewhere_old.exists() or legacy_dead.exists())
