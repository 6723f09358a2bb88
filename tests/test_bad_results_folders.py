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


@needs_cifar
def test_a_board_saved_among_the_runs_is_never_read_as_runs(world, tmp_path):
    """A leaderboard (or any rbvit Parquet file that is not a run's rows) inside ``runs/`` used to be read
    back as runs: the next board listed every entry twice, half with n_seeds 0. Files outside the
    ``suite=/model=`` folders, and files that say they hold a board, are left out with a warning; the
    leaderboard command refuses to write its Parquet file there (DuckDB's glob would read it)."""
    import pandas as pd

    from robustbench_vit.storage.reading import load_results
    from robustbench_vit.storage.verified_parquet import atomic_write_table, file_kind

    res = tmp_path / "res"
    shutil.copytree(world["out"], res)
    before = load_results(res)
    assert rbvit_cli("leaderboard", str(res)).returncode == 0
    assert file_kind(res / "leaderboard.parquet") == "leaderboard"
    assert {file_kind(p) for p in (res / "runs").rglob("*.parquet")} == {"metrics"}
    board = pd.read_parquet(res / "leaderboard.parquet")
    import pyarrow as pa

    table = pa.Table.from_pandas(board, preserve_index=False)
    inside = next((res / "runs").rglob("*.parquet")).parent / "board-copy.parquet"
    atomic_write_table(table, res / "runs" / "board-copy.parquet", kind="leaderboard")  # outside the layout
    atomic_write_table(table, inside, kind="leaderboard")  # in the layout, but it says it is a board
    after = load_results(res)
    assert len(after) == len(before) and set(after.run_id) == set(before.run_id)
    r = rbvit_cli("leaderboard", str(res))
    assert r.returncode == 0, r.stderr
    said = r.stderr.replace("\n", "")  # a narrow terminal wraps the paths
    assert "runs: 1 Parquet files outside" in said and "runs/board-copy.parquet)" in said
    assert (
        f"{inside.parent.name}/board-copy.parquet: an rbvit leaderboard file" in said
        and "an rbvit leaderboard file, not metrics rows" in said
    )
    again = pd.read_parquet(res / "leaderboard.parquet")
    assert len(again) == len(board) and (again.n_seeds >= 1).all()
    r = rbvit_cli("leaderboard", str(res), "--parquet", str(res / "runs" / "lb.parquet"))
    assert r.returncode == 2 and "among the runs" in r.stderr.replace("\n", "")
    assert not (res / "runs" / "lb.parquet").exists()
    (res / "leaderboard.parquet").unlink()
    assert rbvit_cli("leaderboard", str(res / "runs")).returncode == 0  # the runs folder itself named
    assert (res / "leaderboard.parquet").is_file() and not (res / "runs" / "leaderboard.parquet").exists()
