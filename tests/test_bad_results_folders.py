"""A results folder that cannot be read whole, or written at all: the leaderboard skips what it cannot
read with a warning naming it, and a read-only folder is refused before any work, while its complete
results still read back."""

from __future__ import annotations

import os
import shutil

import pytest

from robustbench_vit.engine.runner import evaluate
from tests.helpers import CIFAR10_TEST, needs_cifar, rbvit_cli

EVAL = ("eval", "-s", "clean", "--data", str(CIFAR10_TEST), "--limit", "10")


@pytest.fixture(scope="module")
def world(tmp_path_factory, cifar_card):
    """A results folder holding one finished run of the card on 10 CIFAR images."""
    out = tmp_path_factory.mktemp("finished") / "results"
    evaluate(str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=10, out=str(out), progress=False)
    return {"out": out, "card": str(cifar_card)}


@needs_cifar
@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "foreign"])
def test_leaderboard_skips_unreadable_files_with_a_warning(world, kind, tmp_path):
    import pandas as pd

    res = tmp_path / "res"
    shutil.copytree(world["out"], res)
    good = next(res.rglob("*.parquet"))
    bad = good.with_name(f"zz-{kind}.parquet")
    if kind == "garbage":
        bad.write_bytes(os.urandom(300))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:-40])
    else:
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(bad)
    r = rbvit_cli("leaderboard", str(res))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and bad.name in r.stderr
    board = pd.read_parquet(res / "leaderboard.parquet")
    assert len(board) > 0 and set(board["suite"]) == {"clean"}


@needs_cifar
def test_read_only_results_are_refused_before_any_work_and_complete_ones_still_read(world, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes here")
        r = rbvit_cli(*EVAL, "-m", world["card"], "--out", str(ro))
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 8 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    finally:
        os.chmod(ro, 0o755)
    done = tmp_path / "done"
    shutil.copytree(world["out"], done)
    for p in [done, *done.rglob("*")]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        r = rbvit_cli(*EVAL, "-m", world["card"], "--out", str(done))
        assert r.returncode == 0, r.stderr  # complete results are read back from a read-only folder
    finally:
        for p in [done, *done.rglob("*")]:
            os.chmod(p, 0o755)
