"""Resume never returns a stale or mixed result: corrupt files, summaries, orphaned temp files, batch size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import robustbench_vit as rbvit
from robustbench_vit.storage.reading import load_results
from tests.helpers import CIFAR10_TEST, needs_cifar

KW = dict(data=str(CIFAR10_TEST), limit=20)


@needs_cifar
def test_a_corrupt_finished_file_is_moved_aside_and_recomputed(tmp_path, cifar_card):
    out = tmp_path / "out"
    first = rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    f = next((out / "runs").rglob("*.parquet"))
    f.write_bytes(f.read_bytes()[:50])  # a half-written file (disk full, hand edit)
    again = rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    assert again.set_index("metric")["value"].to_dict() == first.set_index("metric")["value"].to_dict()
    assert list(f.parent.glob(f"_corrupt-*-{f.name}.aside")) and len(load_results(out)) == len(first)
    # DuckDB's documented glob reads `_` files too: the moved-aside file must not end in .parquet
    assert [p.name for p in (out / "runs").rglob("*.parquet")] == [f.name]


@needs_cifar
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_run_saving_samples_recomputes_a_condition_whose_samples_file_is_gone(tmp_path, cifar_card, damage):
    """The metric file alone does not make a condition finished when the run saves per-sample rows: their
    file deleted or damaged since, the resume computes the condition again (same values, the samples back),
    instead of leaving compare and worst-case without them."""
    from robustbench_vit.storage.reading import load_samples

    out = tmp_path / "out"
    first = rbvit.evaluate(str(cifar_card), "clean", out=str(out), save_samples=True, **KW)
    truth = load_samples(out).sort_values("index")[["item", "pred", "loss"]].values.tolist()
    f = next((out / "samples").rglob("*.parquet"))
    if damage == "deleted":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:80])
    again = rbvit.evaluate(str(cifar_card), "clean", out=str(out), save_samples=True, **KW)
    assert again.set_index("metric")["value"].to_dict() == first.set_index("metric")["value"].to_dict()
    assert load_samples(out).sort_values("index")[["item", "pred", "loss"]].values.tolist() == truth
    assert bool(list(f.parent.glob(f"_corrupt-*-{f.name}.aside"))) == (damage == "truncated")


def test_files_an_older_rbvit_moved_aside_leave_the_parquet_glob(tmp_path, cifar_card):
    """Older releases kept ``.parquet`` on moved-aside files, so DuckDB's ``runs/**/*.parquet`` read their
    stale or damaged rows beside the current ones: opening the run's folder renames them."""
    duckdb = pytest.importorskip("duckdb")
    if not CIFAR10_TEST.is_dir():
        pytest.skip("shared CIFAR-10 absent")
    out = tmp_path / "out"
    first = rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    f = next((out / "runs").rglob("*.parquet"))
    legacy = f.with_name(f"_stale-1700000000-{f.name}")
    legacy.write_bytes(f.read_bytes())
    query = f"SELECT count(*) FROM read_parquet('{out}/runs/**/*.parquet', hive_partitioning = true)"
    assert duckdb.sql(query).fetchall()[0][0] == 2 * len(first)  # what an older folder gave
    rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    assert not legacy.exists() and legacy.with_name(legacy.name + ".aside").is_file()
    assert duckdb.sql(query).fetchall()[0][0] == len(first)


@needs_cifar
@pytest.mark.parametrize("source", ["another run", "another condition"])
def test_an_intact_file_of_elsewhere_renamed_into_a_run_is_not_resumed(tmp_path, cifar_card, source):
    """A valid file copied or renamed under this run's name (merged folders, a hand "fix") is refused:
    the rows of a 10-image run never come back as a 20-image run's numbers."""
    out = tmp_path / "out"
    params = {"fractions": (0.0, 0.5), "grid": "4"}
    truth = rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=params, **KW)
    files = sorted(f for f in (out / "runs").rglob("*.parquet") if "summary" not in f.name)
    target = files[0]
    if source == "another run":
        other = tmp_path / "other"
        rbvit.evaluate(
            str(cifar_card), "occlusion", out=str(other), suite_params=params, data=KW["data"], limit=10
        )
        donor = next(f for f in (other / "runs").rglob("*.parquet") if f.name.endswith(target.name[-20:]))
    else:
        donor = files[1]
    target.write_bytes(donor.read_bytes())
    again = rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=params, **KW)
    key = ["condition", "metric"]
    assert again.sort_values(key)["value"].tolist() == truth.sort_values(key)["value"].tolist()
    assert (again["n"] == 20).all()
    assert list(target.parent.glob(f"_foreign-*-{target.name}.aside"))


@needs_cifar
def test_summary_is_written_only_when_it_changes(tmp_path, cifar_card):
    out = tmp_path / "out"
    params = {"fractions": (0.0, 0.5), "grid": "4"}
    rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=params, **KW)
    summary = next((out / "runs").rglob("*summary.parquet"))
    stamp = summary.stat().st_mtime_ns
    rows = len(load_results(out))
    rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=params, **KW)
    assert summary.stat().st_mtime_ns == stamp and len(load_results(out)) == rows


@needs_cifar
def test_orphaned_temp_files_of_dead_processes_are_removed(tmp_path, cifar_card):
    out = tmp_path / "out"
    rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    folder = next((out / "runs").rglob("*.parquet")).parent
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = folder / f".x.parquet.tmp{int(dead.stdout)}"
    mine = folder / f".y.parquet.tmp{os.getpid()}"
    orphan.write_bytes(b"partial")
    mine.write_bytes(b"in flight")
    rbvit.evaluate(str(cifar_card), "clean", out=str(out), **KW)
    assert not orphan.exists() and mine.exists()


@needs_cifar
def test_batch_size_is_part_of_the_run_identity(tmp_path, cifar_card):
    """Batch-mode masks are drawn per batch: a run with another batch size is a new run, not a resume."""
    out = tmp_path / "out"
    p = {"fractions": (0.5,), "grid": "4", "mask_mode": "batch"}
    a = rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=p, batch_size=20, **KW)
    b = rbvit.evaluate(str(cifar_card), "occlusion", out=str(out), suite_params=p, batch_size=1, **KW)
    assert a["run_id"].iat[0] != b["run_id"].iat[0]
    fresh = rbvit.evaluate(
        str(cifar_card), "occlusion", out=str(tmp_path / "fresh"), suite_params=p, batch_size=1, **KW
    )
    assert b.set_index(["condition", "metric"])["value"].equals(
        fresh.set_index(["condition", "metric"])["value"]
    )


def test_booleans_are_strict():
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.suites import make_suite

    assert make_suite("occlusion", {"offset": "yes"}).offset is True
    assert make_suite("occlusion", {"offset": "0"}).offset is False
    with pytest.raises(ConfigError, match="offset"):
        make_suite("occlusion", {"offset": "ture"})


def test_a_file_a_concurrent_run_moved_aside_first_is_recomputed_without_error(tmp_path, monkeypatch):
    """Two runs of one condition find its file damaged; the first moves it aside, the second finds it gone
    (on reading it, or on moving it): the second recomputes the condition, it never stops."""
    from robustbench_vit.storage import store as store_mod

    assert store_mod.move_aside(tmp_path / "gone.parquet", "corrupt") is None
    st = store_mod.RunStore(tmp_path / "out", suite="clean", model="m", dataset="d", run_id="r1")
    path = st.path("clean")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")

    def moved_meanwhile(p, *a, **k):
        p.unlink()  # the concurrent run's move
        raise FileNotFoundError(p)

    monkeypatch.setattr(store_mod, "read_verified", moved_meanwhile)
    assert st.done("clean") is False and not list(path.parent.iterdir())
