"""A number is a function of its inputs' content: change one input part, and eval, a fresh --out on the
same cache, and a sweep all recompute and give the value a from-scratch run gives; change nothing, and
everything resumes with zero recomputation."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from robustbench_vit.data import digests
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.storage.reading import load_results
from robustbench_vit.sweeps.run import load_sweep, run_sweep
from tests.helpers import instrument, needs_cifar, write_cifar_card
from tests.identity_world import (
    CHANGES,
    CLASSES,
    Counter,
    nll,
    overwrite_weights,
    run,
    run_suite,
    truth,
)

#: files written by a test are seconds young: trust their stat tuples (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("young_files_trusted")


@needs_cifar
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_input_is_recomputed_by_eval_fresh_out_and_sweep(identity_world, change, monkeypatch):
    root, cache, out = (
        identity_world["root"],
        identity_world["root"] / "cache",
        identity_world["root"] / "out",
    )
    toml = root / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{root / "sweep-out"}"\ndata = "{identity_world["data"]}"\nmodels = ["{identity_world["card"]}"]\n'
        '[[suite]]\nname = "clean"\n'
    )
    before = nll(run(identity_world, out, cache))
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]

    counter = Counter(monkeypatch)
    assert nll(run(identity_world, out, cache)) == before  # unchanged: resumed ...
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["skipped"]
    assert counter.conditions == 0  # ... with zero recomputation

    CHANGES[change](identity_world)
    expected = truth(identity_world, change)
    assert expected != before
    assert nll(run(identity_world, out, cache)) == expected  # the same --out recomputes
    assert nll(run(identity_world, root / "fresh-out", cache)) == expected  # a fresh --out on the same cache
    statuses = run_sweep(load_sweep(toml))
    assert [s.status for s in statuses] == ["done"]  # the sweep reruns the cell

    rows = load_results(root / "sweep-out").query("metric == 'nll'")
    assert expected in rows.value.tolist()
    latest = rows.sort_values("finished_at").value.iloc[-1]
    assert latest == expected


def _relabel(identity_world):
    lines = identity_world["labels"].read_text().splitlines()
    shifted = [f"{ln.split()[0]} {CLASSES[(CLASSES.index(ln.split()[1]) + 1) % 10]}" for ln in lines]
    identity_world["labels"].write_text("\n".join(shifted) + "\n")


@needs_cifar
@pytest.mark.parametrize("change", ["labels_file", "suite_parameter"])
def test_a_changed_labels_file_or_parameter_is_recomputed_by_eval_fresh_out_and_sweep(
    identity_world, change, monkeypatch
):
    """A flat folder relabelled through its labels file, or a suite parameter changed (in the call and in
    the sweep file): eval, a fresh --out on the same cache and the sweep give the from-scratch value."""
    root, cache, out = (
        identity_world["root"],
        identity_world["root"] / "cache",
        identity_world["root"] / "out",
    )
    kw = {"data": str(identity_world["flat"]), "labels": str(identity_world["labels"])}
    suite, params = ("clean", {}) if change == "labels_file" else ("patch_shuffle", {"grids": ("2",)})

    def ev(where, p):
        return evaluate(str(identity_world["card"]), suite, out=str(where), cache_dir=str(cache), progress=False,
                        suite_params=p, **kw)  # fmt: skip

    def toml(p):
        text = (f'[sweep]\nout = "{root / "sweep-out"}"\ndata = "{identity_world["flat"]}"\nlabels = "{identity_world["labels"]}"\n'
                f'models = ["{identity_world["card"]}"]\n[[suite]]\nname = "{suite}"\n')  # fmt: skip
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
        _relabel(identity_world)
    else:
        params = {"grids": ("4",)}
    expected = value(evaluate(str(identity_world["card"]), suite, out=str(root / "truth"), cache_dir=str(root / "truth-cache"),
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
def test_unchanged_run_resumes_without_decoding(identity_world, monkeypatch):
    cache, out = identity_world["root"] / "cache", identity_world["root"] / "out"
    run(identity_world, out, cache)
    from robustbench_vit.data import cache as cache_mod

    decoded = []
    real = cache_mod.read_item

    def spy(ds, index, j):
        decoded.append(j)
        return real(ds, index, j)

    instrument(monkeypatch, cache_mod, "read_item", spy)
    run(
        identity_world, identity_world["root"] / "other-out", cache
    )  # a fresh --out on the warm cache: the model runs
    assert decoded == []  # ... but no image file is read: their stat tuples are unchanged
    shutil.rmtree(identity_world["root"] / "other-out")


@needs_cifar
def test_a_limit_above_the_set_records_what_was_taken(identity_world):
    df = run(identity_world, identity_world["root"] / "out", identity_world["root"] / "cache", limit=10**6)
    assert set(df["limit"]) == {30} and set(df["n_images"]) == {30}


@needs_cifar
def test_non_finite_logits_are_reported(identity_world, caplog):
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
        evaluate(NaNNet(), "clean", data=str(identity_world["data"]), preprocessing=pre, progress=False)
    assert any("NaN or infinite logits" in r.getMessage() for r in caplog.records)


@needs_cifar
@pytest.mark.parametrize(
    "suite, params",
    [
        ("transfer", lambda card: {"source": str(card), "attack": "fgsm"}),
        ("representations", lambda card: {"compare_with": str(card), "analyses": ("cka",)}),
        ("occlusion", lambda card: {"modes": ("salient",), "saliency_model": str(card), "grid": "8"}),
    ],
)
def test_a_model_a_suite_builds_overwritten_in_place_is_recomputed(identity_world, suite, params):
    """The run id carries the content identity of every model a suite builds besides the evaluated one (a
    transfer source, the model CKA compares with, the saliency model): its weights overwritten with the same size and mtime
    give the from-scratch numbers. The run id used to carry only the suite's parameters (the model's name),
    so the old run was resumed: the old source's accuracy, the old model's CKA."""
    target = write_cifar_card(identity_world["root"] / "target", arch="resnet10t", seed=2)
    p = params(identity_world["card"])
    before = run_suite(identity_world, target, suite, p, "run")
    overwrite_weights(identity_world)
    after = run_suite(identity_world, target, suite, p, "run")
    assert after == run_suite(identity_world, target, suite, p, "truth")
    assert after != before


@needs_cifar
@pytest.mark.parametrize(
    "suite, params, param",
    [
        ("transfer", lambda card: {"source": str(card), "attack": "fgsm"}, "source"),
        ("representations", lambda card: {"compare_with": str(card), "analyses": ("cka",)}, "compare_with"),
        (
            "occlusion",
            lambda card: {"modes": ("salient",), "saliency_model": str(card), "grid": "8"},
            "saliency_model",
        ),
    ],
)
def test_a_model_a_suite_builds_overwritten_during_the_run_is_refused(
    identity_world, monkeypatch, suite, params, param
):
    """The run id names the referenced model's content when the run begins; that model is loaded later (a
    transfer source when adversarials are crafted). Overwritten in between, it is refused: the rows would
    name the old weights' digest and hold the new weights' numbers."""
    from robustbench_vit.errors import CheckpointError
    from robustbench_vit.suites.base import Suite

    target = write_cifar_card(identity_world["root"] / "target", arch="resnet10t", seed=2)
    real = Suite.load_referenced

    def overwritten_first(self, ctx, name):
        overwrite_weights(identity_world)
        return real(self, ctx, name)

    monkeypatch.setattr(Suite, "load_referenced", overwritten_first)
    with pytest.raises(CheckpointError, match="weights file of cifar_vit changed since the run began"):
        run_suite(identity_world, target, suite, params(identity_world["card"]), "run")
    monkeypatch.setattr(Suite, "load_referenced", real)
    assert run_suite(identity_world, target, suite, params(identity_world["card"]), "run")  # settled: runs
