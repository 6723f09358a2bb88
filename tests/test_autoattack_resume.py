"""AutoAttack runs that stop midway: a killed run resumes at the batch in flight; shards split the batches
and the final pass attacks nothing they finished; a shard out of GPU memory leaves its batches to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import instrument, needs_cifar
from tests.smooth_classifier import Smooth
from tests.smooth_classifier import run_autoattack as _eval

pytest.importorskip("pyautoattack")


@needs_cifar
def test_a_killed_run_resumes_at_the_batch_in_flight(tmp_path, monkeypatch):
    from robustbench_vit.suites import autoattack as suite_module

    params = dict(eps="2/255", aa_version="custom", attacks=("apgd-ce", "apgd-t"), limit=60, batch_size=20)
    whole = _eval(Smooth(), out=str(tmp_path / "whole"), cache_dir=str(tmp_path / "c1"), **params)
    real = suite_module.run_stages
    calls: list[int] = []

    def dies_on_second_batch(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    instrument(monkeypatch, suite_module, "run_stages", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        _eval(Smooth(), out=str(tmp_path / "resumed"), cache_dir=str(tmp_path / "c2"), **params)
    calls.clear()
    instrument(monkeypatch, suite_module, "run_stages", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = _eval(Smooth(), out=str(tmp_path / "resumed"), cache_dir=str(tmp_path / "c2"), **params)
    assert len(calls) == 2  # batches 2 and 3; the finished first batch is not attacked again
    key = ["condition", "metric"]
    a = whole.set_index(key)["value"].sort_index()
    b = resumed.set_index(key)["value"].sort_index()
    assert np.allclose(a.values, b.values) and list(a.index) == list(b.index)


@needs_cifar
def test_shards_split_the_batches_and_the_final_pass_attacks_nothing(tmp_path, monkeypatch):
    """Under a shard (k, n) AutoAttack attacks every n-th batch of its one condition and writes no rows;
    the unsharded final pass (as Ray and --devices run it) assembles the rows a single run gives."""
    from robustbench_vit.suites import autoattack as suite_module

    params = dict(eps="2/255", aa_version="custom", attacks=("apgd-ce", "apgd-t"), limit=60, batch_size=20)
    whole = _eval(Smooth(), out=str(tmp_path / "whole"), cache_dir=str(tmp_path / "c1"), **params)
    real = suite_module.run_stages
    attacked: list[list[int]] = []
    instrument(
        monkeypatch,
        suite_module,
        "run_stages",
        lambda aa, f, x, y, st: attacked[-1].append(len(y)) or real(aa, f, x, y, st),
    )
    out = tmp_path / "sharded"
    for k in range(2):
        attacked.append([])
        rows = _eval(Smooth(), out=str(out), cache_dir=str(tmp_path / "c2"), shard=(k, 2), **params)
        assert rows.empty
    assert attacked == [[20, 20], [20]]  # batches 0 and 2, then batch 1
    assert not list(out.rglob("*.parquet"))  # shards store outcomes, not rows
    attacked.append([])
    final = _eval(Smooth(), out=str(out), cache_dir=str(tmp_path / "c2"), **params)
    assert attacked[-1] == []  # every batch was attacked by a shard
    key = ["condition", "metric"]
    a = whole.set_index(key)["value"].sort_index()
    b = final.set_index(key)["value"].sort_index()
    assert list(a.index) == list(b.index) and np.array_equal(a.values, b.values, equal_nan=True)


@needs_cifar
def test_a_shard_out_of_gpu_memory_leaves_its_batches_to_the_final_pass(tmp_path, monkeypatch, caplog):
    """A shard that runs out of memory keeps what it stored and ends without error; the final pass
    attacks the batches it left, and the rows are a single run's."""
    from robustbench_vit.suites import autoattack as suite_module

    params = dict(eps="2/255", aa_version="custom", attacks=("apgd-ce",), limit=60, batch_size=20)
    whole = _eval(Smooth(), cache_dir=str(tmp_path / "c1"), **params)
    real = suite_module.run_stages
    attacked: list[int] = []

    def oom_on_the_second_batch(aa, f, x, y, st):  # type: ignore[no-untyped-def]
        attacked.append(len(y))
        if len(attacked) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(aa, f, x, y, st)

    instrument(monkeypatch, suite_module, "run_stages", oom_on_the_second_batch)
    with caplog.at_level("WARNING"):
        assert _eval(Smooth(), cache_dir=str(tmp_path / "c2"), shard=(0, 1), **params).empty
    assert attacked == [20, 20] and "shard 0/1: out of GPU memory at batch size 20" in caplog.text
    instrument(
        monkeypatch,
        suite_module,
        "run_stages",
        lambda aa, f, x, y, st: attacked.append(len(y)) or real(aa, f, x, y, st),
    )
    final = _eval(Smooth(), cache_dir=str(tmp_path / "c2"), **params)
    assert attacked[2:] == [20, 20]  # the batch that ran out of memory and the one never reached
    key = ["condition", "metric"]
    a, b = (df.set_index(key)["value"].sort_index() for df in (whole, final))
    assert list(a.index) == list(b.index) and np.array_equal(a.values, b.values, equal_nan=True)


@needs_cifar
def test_another_autoattack_package_attacks_again_instead_of_reading_stored_outcomes(tmp_path, monkeypatch):
    """Stored per-batch outcomes are keyed by the AutoAttack package's version: after an upgrade, a fresh
    results folder on the same cache attacks every batch again instead of reading the old package's."""
    from importlib import metadata

    from robustbench_vit.identity import library_versions
    from robustbench_vit.suites import autoattack as suite_module

    params = dict(eps="2/255", aa_version="custom", attacks=("apgd-ce",), limit=40, batch_size=20)
    _eval(Smooth(), out=str(tmp_path / "a"), cache_dir=str(tmp_path / "c"), **params)
    real, calls = suite_module.run_stages, []
    instrument(monkeypatch, suite_module, "run_stages", lambda *a, **k: calls.append(1) or real(*a, **k))
    _eval(Smooth(), out=str(tmp_path / "b"), cache_dir=str(tmp_path / "c"), **params)
    assert calls == []  # same package: a fresh --out reads the stored outcomes
    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "99.0" if d == "pyautoattack" else version(d))
    library_versions.cache_clear()
    try:
        _eval(Smooth(), out=str(tmp_path / "c-out"), cache_dir=str(tmp_path / "c"), **params)
        assert len(calls) == 2  # both batches attacked by the "new" package
    finally:
        monkeypatch.undo()
        library_versions.cache_clear()
