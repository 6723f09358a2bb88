"""Readers take the run that is current for the inputs as they are now: the board, pivot and per-image
readers after inputs were edited and restored, and after a folder gained or lost a file."""

from __future__ import annotations

import pytest

from robustbench_vit.storage.reading import load_results
from tests.helpers import needs_cifar
from tests.identity_world import CHANGES, CLASSES, nll, run

#: files written by a test are seconds young: trust their stat tuples (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("young_files_trusted")


@needs_cifar
def test_the_board_shows_the_run_seen_last_when_inputs_are_restored(identity_world):
    """A card edited, evaluated, then restored: the rerun resumes the first run, and the leaderboard (and
    every "latest value" reader) takes that run, not the newer rows of a card that no longer exists."""
    from robustbench_vit.results.analysis import pivot
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = identity_world["root"] / "out", identity_world["root"] / "cache"
    original = identity_world["card"].read_text()
    first = nll(run(identity_world, out, cache))
    CHANGES["card_kwargs"](identity_world)
    assert nll(run(identity_world, out, cache)) != first
    identity_world["card"].write_text(original)
    assert nll(run(identity_world, out, cache)) == first  # resumed: no row is newer than the edited card's
    board = build_leaderboard(out)
    assert board.query("metric == 'nll'").value.tolist() == [first]
    assert pivot(load_results(out), suite="clean", metric="nll").iloc[0, 0] == first


@needs_cifar
def test_per_image_rows_come_from_the_run_seen_last_never_a_mix(identity_world):
    """Per-sample readers (compare, worst-case) take one run per model and condition, the one seen last:
    after a card is edited and restored, the paired test reads the restored card's images only."""
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import latest_runs, load_samples

    out, cache = identity_world["root"] / "out", identity_world["root"] / "cache"
    original = identity_world["card"].read_text()
    first = run(identity_world, out, cache, save_samples=True)
    CHANGES["label_order"](identity_world)
    edited = run(identity_world, out, cache, save_samples=True)
    identity_world["card"].write_text(original)
    run(identity_world, out, cache, save_samples=True)
    samples = load_samples(out)
    loss = {r: samples[samples.run_id == r].sort_values("index").loss.tolist() for r in set(samples.run_id)}
    first_run, edited_run = first.run_id.iloc[0], edited.run_id.iloc[0]
    assert loss[first_run] != loss[edited_run]  # the two runs' per-image rows differ
    chosen = latest_runs(samples, ["dataset", "condition"]).sort_values("index")
    assert set(chosen.run_id) == {first_run} and chosen.loss.tolist() == loss[first_run]
    test = mcnemar(out, str(identity_world["card"]), str(identity_world["card"]))
    assert test.n == 30 and test.acc_a == pytest.approx(float(first.query("metric == 'top1'").value.iloc[0]))


@needs_cifar
def test_the_board_drops_runs_of_a_folder_listed_otherwise_since(identity_world):
    """An image deleted from the folder, then a rerun: the board shows the run of the folder as it is now,
    not the larger run that read the deleted file; a later --limit run of the current folder does not
    replace it."""
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = identity_world["root"] / "out", identity_world["root"] / "cache"
    run(identity_world, out, cache)
    (identity_world["data"] / "cat" / "0.ppm").unlink()
    now = nll(run(identity_world, out, cache))
    run(identity_world, out, cache, limit=5)
    board = build_leaderboard(out).query("metric == 'nll'")
    assert board.value.tolist() == [now] and board.n_images.tolist() == [29]
    assert board.image_sets_available.tolist() == [2]  # the 29 and the --limit 5 set of the current folder


@needs_cifar
@pytest.mark.parametrize("path", ["symlink", "relative"])
def test_one_folder_reached_by_two_paths_is_one_folder_to_the_board(identity_world, path, monkeypatch):
    """The first run through a symlink (or a relative path), an image deleted, the rerun through the folder's
    own absolute path: the board shows the rerun, not the larger run that read the deleted file (the two
    runs' rows named two folders, so they competed by size)."""
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache, data = (
        identity_world["root"] / "out",
        identity_world["root"] / "cache",
        identity_world["data"],
    )
    if path == "symlink":
        other = identity_world["root"] / "link"
        other.symlink_to(data, target_is_directory=True)
    else:
        monkeypatch.chdir(data.parent)
        other = data.name
    before = run(identity_world, out, cache, data=str(other))
    (data / "cat" / "0.ppm").unlink()
    now = nll(run(identity_world, out, cache, data=str(data)))
    assert before.data_root.iat[0] == str(data.resolve())  # the folder itself, whatever path reached it
    board = build_leaderboard(out).query("metric == 'nll'")
    assert board.value.tolist() == [now] and board.n_images.tolist() == [29]


@needs_cifar
def test_a_run_resumed_whole_after_its_folder_changed_is_current_with_all_its_rows(identity_world):
    """A full run, then a --subset run; an image outside the subset is deleted and the --subset run resumed
    (same id, every condition reused, nothing rewritten). Its marker records the folder's new list, so the
    full run, which read the deleted file, leaves the board, and none of the resumed rows do."""
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = identity_world["root"] / "out", identity_world["root"] / "cache"
    subset = identity_world["root"] / "subset.txt"
    subset.write_text("".join(f"{c}/1.ppm\n" for c in CLASSES))
    run(identity_world, out, cache)
    part = run(identity_world, out, cache, subset=str(subset))
    (identity_world["data"] / "cat" / "0.ppm").unlink()
    again = run(identity_world, out, cache, subset=str(subset))
    assert again.run_id.iloc[0] == part.run_id.iloc[0] and again.attrs["conditions_computed"] == 0
    board = build_leaderboard(out)
    assert set(board.run_id) == {part.run_id.iloc[0]} and len(board) == len(part)
