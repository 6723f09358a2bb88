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


@needs_cifar
def test_two_cards_of_one_name_and_weights_are_two_board_entries(identity_world):
    """Two card files giving one name to one weights file built two ways (``kwargs``) are two models: the
    board shows both, labelled by card, and each accuracy row pairs with its own model's clean top-1.
    (One card edited in place stays one entry whose run seen last is current: the test above.)"""
    import json

    from robustbench_vit.engine.runner import evaluate
    from robustbench_vit.results.analysis import relative_to_clean
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = identity_world["root"] / "out", identity_world["root"] / "cache"
    card = identity_world["card"]
    twin = card.with_name("twin.json")
    raw = json.loads(card.read_text())
    twin.write_text(json.dumps({**raw, "kwargs": {**raw.get("kwargs", {}), "act_layer": "relu"}}))
    kw = dict(data=str(identity_world["data"]), out=str(out), cache_dir=str(cache), progress=False)
    params = {"fractions": (0.5,), "grid": "4"}
    for path in (card, twin):
        evaluate(str(path), ["clean", "occlusion"], suite_params=params, save_samples=True, **kw)
    board = build_leaderboard(out).query("suite == 'clean' and metric == 'nll'")
    assert board.value.nunique() == 2
    assert sorted(board.label) == sorted(f"{raw['name']} [{p.resolve()}]" for p in (card, twin))
    rows = load_results(out)
    twin_clean = (rows.arch == str(twin.resolve())) & (rows.suite == "clean") & (rows.metric == "top1")
    rows.loc[twin_clean, "value"] = 0.75  # tell the two clean runs apart (both models are near chance)
    paired = relative_to_clean(rows).query("suite == 'occlusion'").dropna(subset=["clean_top1"])
    assert set(paired.arch) == {str(card.resolve()), str(twin.resolve())}
    for arch, top1 in zip(paired.arch, paired.clean_top1):
        assert top1 == (0.75 if arch == str(twin.resolve()) else 0.1)  # its own clean run, never the twin's
    # compare/worst-case: a card file names its own runs; the shared name alone is refused, never answered
    # with whichever ran last (compared with itself: no difference at all)
    from robustbench_vit.errors import DataError
    from robustbench_vit.results.analysis import mcnemar

    test = mcnemar(out, str(card), str(twin))
    assert test.n == 30 and test.a_only + test.b_only > 0
    with pytest.raises(DataError, match="names 2 models"):
        mcnemar(out, raw["name"], str(card))


@needs_cifar
def test_a_sweep_that_skips_a_complete_cell_marks_its_run_current(identity_world):
    """Sweep, then an eval of an edited card into the sweep's folder, then the card restored: the next sweep
    skips the cell (its inputs are as the cell recorded), and the board shows the restored card's numbers,
    never the edited card's, which the skip would otherwise leave as the run seen last."""
    from robustbench_vit.results.leaderboard import build_leaderboard
    from robustbench_vit.sweeps.run import load_sweep, run_sweep

    root, cache = identity_world["root"], identity_world["root"] / "cache"
    out = root / "sweep-out"
    toml = root / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{out}"\ndata = "{identity_world["data"]}"\n'
        f'models = ["{identity_world["card"]}"]\n[[suite]]\nname = "clean"\n'
    )
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]
    first = build_leaderboard(out).query("metric == 'nll'").value.tolist()
    original = identity_world["card"].read_text()
    CHANGES["card_kwargs"](identity_world)
    edited = nll(run(identity_world, out, cache))
    assert build_leaderboard(out).query("metric == 'nll'").value.tolist() == [edited] != first
    identity_world["card"].write_text(original)
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["skipped"]
    assert build_leaderboard(out).query("metric == 'nll'").value.tolist() == first


def test_a_name_that_resolves_to_a_model_picks_its_arch_among_the_runs_of_its_key():
    """Runs of one key built two ways (a zoo entry retagged between releases): a reference that resolves
    to a model picks the runs of its exact arch; a key no reference resolves is refused when ambiguous."""
    import pandas as pd

    from robustbench_vit.errors import DataError
    from robustbench_vit.results.selection import runs_of_model

    runs = pd.DataFrame(
        {
            "model": ["resnet10t", "resnet10t", "gone"],
            "arch": ["resnet10t", "resnet10t.old", "x"],
            "run_id": ["r1", "r2", "r3"],
        }
    )
    assert runs_of_model("timm:resnet10t", ["resnet10t", "gone"], runs) == ("resnet10t", {"r1"})
    two = runs.assign(model="gone")
    with pytest.raises(DataError, match="gone names 3 models"):
        runs_of_model("gone", ["gone"], two)
    assert runs_of_model("gone", ["gone"], runs) == ("gone", None)  # one model under the name
