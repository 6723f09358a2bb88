"""A number is a function of its inputs' content: change one input part, and eval, a fresh --out on the
same cache, and a sweep all recompute and give the value a from-scratch run gives; change nothing, and
everything resumes with zero recomputation."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from robustbench_vit.data import digests
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.storage.reading import load_results
from robustbench_vit.suites.base import Suite
from robustbench_vit.sweeps.run import load_sweep, run_sweep
from tests.helpers import CIFAR10_TEST, needs_cifar, write_cifar_card

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def _settled(monkeypatch):
    """Trust stat tuples at once (files written by a test are seconds young): this exercises the stat
    tuple itself, not the racy-file rule that would re-hash them anyway."""
    monkeypatch.setattr(digests, "SETTLED_NS", -(10**12))


@pytest.fixture()
def world(tmp_path):
    """A CIFAR card, a class-folder dataset of uncompressed PPM files (every file the same size), a flat
    copy with a labels file, and a counter of evaluated conditions."""
    card = write_cifar_card(tmp_path / "card")
    data = tmp_path / "data"
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        for k, src in enumerate(sorted((CIFAR10_TEST / c).iterdir())[:3]):
            img = Image.open(src).convert("RGB")
            img.save(data / c / f"{k}.ppm")
            img.save(flat / f"{c}-{k}.ppm")
            lines.append(f"{c}-{k}.ppm {c}")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return {"root": tmp_path, "card": card, "data": data, "flat": flat, "labels": labels}


class Counter:
    def __init__(self, monkeypatch):
        self.conditions = 0
        real = Suite._run

        def counting(suite, ctx, cond, bs):
            self.conditions += 1
            return real(suite, ctx, cond, bs)

        monkeypatch.setattr(Suite, "_run", counting)


def nll(df) -> float:
    return float(df.query("metric == 'nll'").value.iloc[0])


def run(world, out, cache, **kw):
    kw.setdefault("data", str(world["data"]))
    return evaluate(str(world["card"]), "clean", out=str(out), cache_dir=str(cache), progress=False, **kw)


def truth(world, tag, **kw):
    """A from-scratch evaluation: a brand-new cache and results folder."""
    return nll(run(world, world["root"] / f"truth-{tag}", world["root"] / f"truth-cache-{tag}", **kw))


def _rewrite_card(world, **changes):
    card = json.loads(world["card"].read_text())
    card.update(changes)
    world["card"].write_text(json.dumps(card))


def _swap_image(world):
    """Replace one image by another of the same byte size (PPM): the name and size stay."""
    a, b = world["data"] / "cat" / "0.ppm", world["data"] / "dog" / "1.ppm"
    assert a.stat().st_size == b.stat().st_size
    st = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p / touch -r would leave it


def _overwrite_weights(world):
    """New weights in place, with the old size and mtime (only ctime betrays the change)."""
    import timm
    import torch
    from safetensors.torch import save_file

    path = world["card"].parent / "weights.safetensors"
    st = path.stat()
    torch.manual_seed(123)
    net = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=4, depth=2
    )
    save_file(net.state_dict(), str(path))
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_class_folders(world):
    """The cat and dog folders trade names: every file keeps its name and bytes, half change class."""
    data = world["data"]
    (data / "cat").rename(data / "tmp")
    (data / "dog").rename(data / "cat")
    (data / "tmp").rename(data / "dog")


def _add_image(world):
    shutil.copyfile(world["data"] / "dog" / "1.ppm", world["data"] / "cat" / "9.ppm")


def _retarget_weights_link(world):
    """The card's weights file becomes a symlink to other weights: same path, other bytes."""
    path = world["card"].parent / "weights.safetensors"
    other = write_cifar_card(world["root"] / "other", seed=5).parent / "weights.safetensors"
    path.unlink()
    path.symlink_to(other)


CHANGES = {
    "weights_same_size_and_mtime": lambda w: _overwrite_weights(w),
    "weights_symlink_retargeted": _retarget_weights_link,
    "card_crop_pct": lambda w: _rewrite_card(w, crop_pct=0.875),
    "class_folders_swapped": _swap_class_folders,
    "image_added": _add_image,
    "card_kwargs": lambda w: _rewrite_card(
        w, kwargs={"img_size": 32, "patch_size": 4, "depth": 2, "act_layer": "relu"}
    ),
    "label_order": lambda w: _rewrite_card(w, label_space=list(reversed(CLASSES))),
    "same_size_image_replaced": _swap_image,
}


@needs_cifar
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_input_is_recomputed_by_eval_fresh_out_and_sweep(world, change, monkeypatch):
    root, cache, out = world["root"], world["root"] / "cache", world["root"] / "out"
    toml = root / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{root / "sweep-out"}"\ndata = "{world["data"]}"\nmodels = ["{world["card"]}"]\n'
        '[[suite]]\nname = "clean"\n'
    )
    before = nll(run(world, out, cache))
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]

    counter = Counter(monkeypatch)
    assert nll(run(world, out, cache)) == before  # unchanged: resumed ...
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["skipped"]
    assert counter.conditions == 0  # ... with zero recomputation

    CHANGES[change](world)
    expected = truth(world, change)
    assert expected != before
    assert nll(run(world, out, cache)) == expected  # the same --out recomputes
    assert nll(run(world, root / "fresh-out", cache)) == expected  # a fresh --out on the same cache
    statuses = run_sweep(load_sweep(toml))
    assert [s.status for s in statuses] == ["done"]  # the sweep reruns the cell

    rows = load_results(root / "sweep-out").query("metric == 'nll'")
    assert expected in rows.value.tolist()
    latest = rows.sort_values("finished_at").value.iloc[-1]
    assert latest == expected


def _relabel(world):
    lines = world["labels"].read_text().splitlines()
    shifted = [f"{ln.split()[0]} {CLASSES[(CLASSES.index(ln.split()[1]) + 1) % 10]}" for ln in lines]
    world["labels"].write_text("\n".join(shifted) + "\n")


@needs_cifar
@pytest.mark.parametrize("change", ["labels_file", "suite_parameter"])
def test_a_changed_labels_file_or_parameter_is_recomputed_by_eval_fresh_out_and_sweep(
    world, change, monkeypatch
):
    """A flat folder relabelled through its labels file, or a suite parameter changed (in the call and in
    the sweep file): eval, a fresh --out on the same cache and the sweep give the from-scratch value."""
    root, cache, out = world["root"], world["root"] / "cache", world["root"] / "out"
    kw = {"data": str(world["flat"]), "labels": str(world["labels"])}
    suite, params = ("clean", {}) if change == "labels_file" else ("patch_shuffle", {"grids": ("2",)})

    def ev(where, p):
        return evaluate(str(world["card"]), suite, out=str(where), cache_dir=str(cache), progress=False,
                        suite_params=p, **kw)  # fmt: skip

    def toml(p):
        text = (f'[sweep]\nout = "{root / "sweep-out"}"\ndata = "{world["flat"]}"\nlabels = "{world["labels"]}"\n'
                f'models = ["{world["card"]}"]\n[[suite]]\nname = "{suite}"\n')  # fmt: skip
        if p:
            text += 'params = { grids = ["' + p["grids"][0] + '"] }\n'
        (root / "sweep.toml").write_text(text)
        return load_sweep(root / "sweep.toml")

    metric = "nll" if change == "labels_file" else "top1"
    value = lambda df: float(df.query(f"metric == '{metric}'").sort_values("condition").value.iloc[0])  # noqa: E731
    first = ev(out, params)
    before = value(first)
    assert [s.status for s in run_sweep(toml(params))] == ["done"]
    assert [s.status for s in run_sweep(toml(params))] == ["skipped"]
    if change == "labels_file":
        _relabel(world)
    else:
        params = {"grids": ("4",)}
    expected = value(evaluate(str(world["card"]), suite, out=str(root / "truth"), cache_dir=str(root / "truth-cache"),
                              progress=False, suite_params=params, **kw))  # fmt: skip
    after = ev(out, params)
    assert value(after) == expected
    assert value(ev(root / "fresh-out", params)) == expected
    assert [s.status for s in run_sweep(toml(params))] == ["done"]
    assert after.run_id.iloc[0] != first.run_id.iloc[0]
    if change == "labels_file":  # the labels are part of the image set's identity
        assert expected != before and after.image_set.iloc[0] != first.image_set.iloc[0]


def test_touched_file_is_hashed_once_then_trusted(tmp_path):
    """git-index behaviour: an unchanged stat tuple is trusted; a changed one (ctime, inode) re-hashes; an
    index whose bytes were flipped is discarded, never trusted."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    index = digests.DigestIndex(tmp_path / "idx", "files")
    d1 = index.digest_of("w", f)
    index.save()
    st = f.stat()
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    again = digests.DigestIndex(tmp_path / "idx", "files")
    assert not np.array_equal(again.digest_of("w", f), d1)
    again.save()
    raw = bytearray((tmp_path / "idx" / "files.npz").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    (tmp_path / "idx" / "files.npz").write_bytes(bytes(raw))
    damaged = digests.DigestIndex(tmp_path / "idx", "files")
    assert damaged._entries == {}


def test_young_files_are_not_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "SETTLED_NS", 10**12)  # every file is "young"
    f = tmp_path / "x"
    f.write_bytes(b"x")
    _, stat, _ = digests.hash_file(f)
    assert stat is None


@needs_cifar
def test_unchanged_run_resumes_without_decoding(world, monkeypatch):
    cache, out = world["root"] / "cache", world["root"] / "out"
    run(world, out, cache)
    from robustbench_vit.data import cache as cache_mod

    decoded = []
    real = cache_mod.read_item

    def spy(ds, index, j):
        decoded.append(j)
        return real(ds, index, j)

    monkeypatch.setattr(cache_mod, "read_item", spy)
    run(world, world["root"] / "other-out", cache)  # a fresh --out on the warm cache: the model runs
    assert decoded == []  # ... but no image file is read: their stat tuples are unchanged
    shutil.rmtree(world["root"] / "other-out")


@needs_cifar
def test_a_limit_above_the_set_records_what_was_taken(world):
    df = run(world, world["root"] / "out", world["root"] / "cache", limit=10**6)
    assert set(df["limit"]) == {30} and set(df["n_images"]) == {30}


@needs_cifar
def test_non_finite_logits_are_reported(world, caplog):
    import torch

    class NaNNet(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 10), float("nan"))

    pre = {
        "input_size": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "crop_pct": 1.0,
        "label_space": "cifar10",
    }
    with caplog.at_level("WARNING"):
        evaluate(NaNNet(), "clean", data=str(world["data"]), preprocessing=pre, progress=False)
    assert any("NaN or infinite logits" in r.getMessage() for r in caplog.records)


@needs_cifar
def test_the_board_shows_the_run_seen_last_when_inputs_are_restored(world):
    """A card edited, evaluated, then restored: the rerun resumes the first run, and the leaderboard (and
    every "latest value" reader) takes that run, not the newer rows of a card that no longer exists."""
    from robustbench_vit.results.analysis import pivot
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = world["root"] / "out", world["root"] / "cache"
    original = world["card"].read_text()
    first = nll(run(world, out, cache))
    CHANGES["card_kwargs"](world)
    assert nll(run(world, out, cache)) != first
    world["card"].write_text(original)
    assert nll(run(world, out, cache)) == first  # resumed: no row is newer than the edited card's
    board = build_leaderboard(out)
    assert board.query("metric == 'nll'").value.tolist() == [first]
    assert pivot(load_results(out), suite="clean", metric="nll").iloc[0, 0] == first


@needs_cifar
def test_per_image_rows_come_from_the_run_seen_last_never_a_mix(world):
    """Per-sample readers (compare, worst-case) take one run per model and condition, the one seen last:
    after a card is edited and restored, the paired test reads the restored card's images only."""
    from robustbench_vit.results.analysis import mcnemar
    from robustbench_vit.storage.reading import latest_runs, load_samples

    out, cache = world["root"] / "out", world["root"] / "cache"
    original = world["card"].read_text()
    first = run(world, out, cache, save_samples=True)
    CHANGES["label_order"](world)
    edited = run(world, out, cache, save_samples=True)
    world["card"].write_text(original)
    run(world, out, cache, save_samples=True)
    samples = load_samples(out)
    loss = {r: samples[samples.run_id == r].sort_values("index").loss.tolist() for r in set(samples.run_id)}
    first_run, edited_run = first.run_id.iloc[0], edited.run_id.iloc[0]
    assert loss[first_run] != loss[edited_run]  # the two runs' per-image rows differ
    chosen = latest_runs(samples, ["dataset", "condition"]).sort_values("index")
    assert set(chosen.run_id) == {first_run} and chosen.loss.tolist() == loss[first_run]
    test = mcnemar(out, str(world["card"]), str(world["card"]))
    assert test.n == 30 and test.acc_a == pytest.approx(float(first.query("metric == 'top1'").value.iloc[0]))


@needs_cifar
def test_the_board_drops_runs_of_a_folder_listed_otherwise_since(world):
    """An image deleted from the folder, then a rerun: the board shows the run of the folder as it is now,
    not the larger run that read the deleted file; a later --limit run of the current folder does not
    replace it."""
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = world["root"] / "out", world["root"] / "cache"
    run(world, out, cache)
    (world["data"] / "cat" / "0.ppm").unlink()
    now = nll(run(world, out, cache))
    run(world, out, cache, limit=5)
    board = build_leaderboard(out).query("metric == 'nll'")
    assert board.value.tolist() == [now] and board.n_images.tolist() == [29]
    assert board.image_sets_available.tolist() == [2]  # the 29 and the --limit 5 set of the current folder


@needs_cifar
def test_a_run_resumed_whole_after_its_folder_changed_is_current_with_all_its_rows(world):
    """A full run, then a --subset run; an image outside the subset is deleted and the --subset run resumed
    (same id, every condition reused, nothing rewritten). Its marker records the folder's new list, so the
    full run, which read the deleted file, leaves the board, and none of the resumed rows do."""
    from robustbench_vit.results.leaderboard import build_leaderboard

    out, cache = world["root"] / "out", world["root"] / "cache"
    subset = world["root"] / "subset.txt"
    subset.write_text("".join(f"{c}/1.ppm\n" for c in CLASSES))
    run(world, out, cache)
    part = run(world, out, cache, subset=str(subset))
    (world["data"] / "cat" / "0.ppm").unlink()
    again = run(world, out, cache, subset=str(subset))
    assert again.run_id.iloc[0] == part.run_id.iloc[0] and again.attrs["conditions_computed"] == 0
    board = build_leaderboard(out)
    assert set(board.run_id) == {part.run_id.iloc[0]} and len(board) == len(part)


@needs_cifar
@pytest.mark.parametrize(
    "suite, params",
    [
        ("transfer", lambda card: {"source": str(card), "attack": "fgsm"}),
        ("representations", lambda card: {"compare_with": str(card), "analyses": ("cka",)}),
        ("occlusion", lambda card: {"modes": ("salient",), "saliency_model": str(card), "grid": "8"}),
    ],
)
def test_a_model_a_suite_builds_overwritten_in_place_is_recomputed(world, suite, params):
    """The run id carries the content identity of every model a suite builds besides the evaluated one (a
    transfer source, the model CKA compares with, the saliency model): its weights overwritten with the same size and mtime
    give the from-scratch numbers. The run id used to carry only the suite's parameters (the model's name),
    so the old run was resumed: the old source's accuracy, the old model's CKA."""
    target = write_cifar_card(world["root"] / "target", arch="resnet10t", seed=2)

    def run_suite(out, cache):  # type: ignore[no-untyped-def]
        df = evaluate(
            str(target),
            suite,
            suite_params=params(world["card"]),
            data=str(world["data"]),
            out=str(out),
            cache_dir=str(cache),
            progress=False,
        )
        return df.set_index(["condition", "metric"]).value.fillna(-1).sort_index().to_dict()

    before = run_suite(world["root"] / "out", world["root"] / "cache")
    _overwrite_weights(world)
    after = run_suite(world["root"] / "out", world["root"] / "cache")
    assert after == run_suite(world["root"] / "truth-out", world["root"] / "truth-cache")
    assert after != before
