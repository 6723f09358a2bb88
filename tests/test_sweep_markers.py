"""A sweep skips a cell only while its marker is intact and every results file the cell wrote still holds
its rows: a file damaged, edited or deleted since is recomputed by the next sweep (never a board silently
lacking it), a damaged or edited marker reruns its cell as a resume (nothing recomputed), and a copied
results folder is read back once, then trusted by its files' stat tuples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robustbench_vit.storage.reading import load_results, load_samples
from robustbench_vit.sweeps import markers
from robustbench_vit.sweeps.run import load_sweep, plan, run_sweep
from tests.helpers import needs_cifar
from tests.identity_world import Counter

pytestmark = [needs_cifar, pytest.mark.usefixtures("young_files_trusted")]


def _sweep(world: dict, out: Path) -> Path:
    toml = world["root"] / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{out}"\ndata = "{world["data"]}"\nmodels = ["{world["card"]}"]\n'
        '[[suite]]\nname = "clean"\nsave_samples = true\n'
    )
    return toml


def _statuses(toml: Path, out: Path | None = None) -> list[str]:
    return [s.status for s in run_sweep(load_sweep(toml), None if out is None else str(out))]


def _numbers(out: Path) -> tuple[list, list]:
    rows = load_results(out).sort_values(["condition", "metric"])
    samples = load_samples(out).sort_values("index")
    return rows[["condition", "metric", "value"]].values.tolist(), samples[
        ["item", "pred", "loss"]
    ].values.tolist()


def _edit_a_value(path: Path) -> None:
    """Rewrite the file with one value changed, keeping its metadata (its stored SHA-256): an edit by hand."""
    table = pq.read_table(path, partitioning=None)
    col = "value" if "value" in table.column_names else "loss"
    values = table.column(col).to_pylist()
    values[0] = values[0] + 0.25
    edited = pa.array(values, table.schema.field(col).type)
    table = table.set_column(table.column_names.index(col), col, edited)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "metric file deleted": lambda out: next((out / "runs").rglob("*clean*.parquet")).unlink(),
    "metric file truncated": lambda out: _truncate(next((out / "runs").rglob("*clean*.parquet"))),
    "metric value edited": lambda out: _edit_a_value(next((out / "runs").rglob("*clean*.parquet"))),
    "per-sample file deleted": lambda out: next((out / "samples").rglob("*.parquet")).unlink(),
    "per-sample loss edited": lambda out: _edit_a_value(next((out / "samples").rglob("*.parquet"))),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_results_file_of_a_complete_cell_is_recomputed_by_the_next_sweep(identity_world, damage):
    out = identity_world["root"] / "out"
    toml = _sweep(identity_world, out)
    assert _statuses(toml) == ["done"]
    truth = _numbers(out)
    assert _statuses(toml) == ["skipped"]
    DAMAGE[damage](out)
    assert [s.status for s in plan(load_sweep(toml), out)] == ["todo"]  # a dry run says so too
    assert _statuses(toml) == ["done"]  # the resume recomputes what is missing or damaged
    assert _numbers(out) == truth
    assert _statuses(toml) == ["skipped"]


@pytest.mark.parametrize(
    "edit", ["runs edited", "identity edited", "bit flipped", "written by an older rbvit"]
)
def test_a_damaged_or_edited_marker_reruns_its_cell_as_a_resume(identity_world, monkeypatch, edit):
    out = identity_world["root"] / "out"
    toml = _sweep(identity_world, out)
    assert _statuses(toml) == ["done"]
    truth = _numbers(out)
    (marker,) = (out / "cells").glob("*.json")
    info = json.loads(marker.read_text())
    if edit == "runs edited":  # an older run of the model named as the cell's: never marked current by it
        info["runs"][0]["run_id"] = "0" * 12
    elif edit == "identity edited":
        info["identity"] = info["identity"][::-1]
    elif edit == "written by an older rbvit":
        info = {k: v for k, v in info.items() if k not in ("files", "sha256")}
    text = json.dumps(info)
    if edit == "bit flipped":
        text = marker.read_text()
        i = text.index('"rows": ') + len('"rows": ')
        text = text[:i] + str(int(text[i]) ^ 1) + text[i + 1 :]
    marker.write_text(text)
    counter = Counter(monkeypatch)
    assert _statuses(toml) == ["done"]
    assert counter.conditions == 0  # every finished condition resumed, none recomputed
    assert _numbers(out) == truth
    assert _statuses(toml) == ["skipped"]


def test_a_marker_copied_under_another_cells_name_is_no_marker(identity_world):
    out = identity_world["root"] / "out"
    toml = _sweep(identity_world, out)
    assert _statuses(toml) == ["done"]
    (marker,) = (out / "cells").glob("*.json")
    copy = marker.with_name("0" * 16 + ".json")
    shutil.copy(marker, copy)
    assert markers.read_marker(out, "0" * 16) is None
    assert markers.read_marker(out, marker.stem) is not None


def test_a_copied_results_folder_is_read_back_once_then_trusted_by_stat(identity_world, monkeypatch):
    out = identity_world["root"] / "out"
    toml = _sweep(identity_world, out)
    assert _statuses(toml) == ["done"]
    copy = identity_world["root"] / "copy"
    shutil.copytree(out, copy)  # new inodes and ctimes: every file is read back against its SHA-256
    reads = []
    real = markers._content_sha
    monkeypatch.setattr(markers, "_content_sha", lambda p: reads.append(p) or real(p))
    marker = next((copy / "cells").glob("*.json")).read_bytes()
    assert [s.status for s in plan(load_sweep(toml), copy)] == ["skipped"]  # a dry run reads, writes nothing
    assert len(reads) == 2 and next((copy / "cells").glob("*.json")).read_bytes() == marker
    assert _statuses(toml, copy) == ["skipped"]
    assert len(reads) == 4  # the metric file and the per-sample file, read back again ...
    assert _statuses(toml, copy) == ["skipped"]
    assert len(reads) == 4  # ... then trusted by their recorded stat tuples


def test_a_file_written_in_the_tick_the_marker_recorded_is_read_back(identity_world, monkeypatch):
    """Without the test's trust of young files: a file whose ctime is within 2 s of its recorded check is
    read back (a write in the same clock tick would leave its stat tuple as it was)."""
    from robustbench_vit.data import digests

    monkeypatch.setattr(digests, "SETTLED_NS", 2_000_000_000)
    out = identity_world["root"] / "out"
    toml = _sweep(identity_world, out)
    assert _statuses(toml) == ["done"]
    reads = []
    real = markers._content_sha
    monkeypatch.setattr(markers, "_content_sha", lambda p: reads.append(p) or real(p))
    assert _statuses(toml) == ["skipped"]
    assert len(reads) == 2


def test_inputs_changed_while_a_cell_ran_leave_it_incomplete(identity_world, monkeypatch):
    """A cell's identity is taken before it runs and its weights are read later: a checkpoint a training job
    rewrites meanwhile is evaluated as the new weights, so the marker must not vouch for the old ones. Once
    they are back, the next sweep recomputes them (their rows equal a from-scratch run), instead of skipping
    the cell and marking the new weights' rows current for the old weights."""
    from robustbench_vit.engine import runner
    from robustbench_vit.results.leaderboard import build_leaderboard
    from tests.identity_world import overwrite_weights, truth

    weights = identity_world["card"].parent / "weights.safetensors"
    original = weights.read_bytes()
    expected = truth(identity_world, "old-weights")
    out = identity_world["root"] / "sweep-out"
    toml = _sweep(identity_world, out)
    real = runner.evaluate

    def rewritten_first(*args, **kwargs):  # the job saves its next epoch after the sweep identified the cell
        overwrite_weights(identity_world)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", rewritten_first)
    assert _statuses(toml) == ["done"]
    monkeypatch.setattr(runner, "evaluate", real)
    weights.write_bytes(original)  # the old weights are back

    assert [s.status for s in plan(load_sweep(toml), out)] == ["todo"]
    assert _statuses(toml) == ["done"]
    board = build_leaderboard(out).query("metric == 'nll' and condition == 'clean'")
    assert expected in board.value.tolist()  # the old weights' entry, beside the new weights' own
    assert board.label.nunique() == len(board) == 2
