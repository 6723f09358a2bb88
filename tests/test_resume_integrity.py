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
    assert list(f.parent.glob(f"_corrupt-*-{f.name}")) and len(load_results(out)) == len(first)


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
    assert list(target.parent.glob(f"_foreign-*-{target.name}"))


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
