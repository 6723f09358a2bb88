"""An installed package's code replaced in memory (a notebook's patch) is another run.

The probe: ``timm.layers.mlp.Mlp.forward = mine`` in a notebook (a common way to read attention maps is to
set one's own ``Attention.forward``), then ``rbvit.evaluate("vit_b16", ...)``. A model built by name is keyed
by timm's version, so before, the patched numbers were stored under the shipped model's run id: the patched
run resumed the unpatched numbers, and the next unpatched run resumed the patched ones (exit 0 both times).
Now every function or class of outside code set in an installed package's module or on its classes keys the
run (and the sweep cell and the stored artifacts), and labels the board entry; nothing is found as shipped
(``tests/test_replaced_code.py::test_the_shipped_package_replaces_nothing``).
"""

from __future__ import annotations

import functools
import json

import pytest
import timm.layers.mlp as timm_mlp
import torch
import torch.nn.functional as F

import robustbench_vit as rbvit
from robustbench_vit.errors import ConfigError
from robustbench_vit.library_patches import replaced_library_code
from tests.helpers import CIFAR10_TEST, assert_ray_sweep_refused, needs_cifar


def _mine(self, x):  # type: ignore[no-untyped-def]
    return x * 0.5


def test_each_kind_of_patch_is_found_and_undone(monkeypatch):
    class MyMlp(torch.nn.Module):
        pass

    def gelu(x, approximate="none"):  # type: ignore[no-untyped-def]
        return x

    kinds = {
        "timm.layers.mlp.Mlp.forward": lambda m: m.setattr(timm_mlp.Mlp, "forward", _mine),
        "timm.layers.mlp.Mlp.extra": lambda m: m.setattr(
            timm_mlp.Mlp, "extra", property(_mine), raising=False
        ),
        "timm.layers.mlp.Mlp.helper": lambda m: m.setattr(
            timm_mlp.Mlp, "helper", staticmethod(gelu), raising=False
        ),
        "torch.nn.functional.gelu": lambda m: m.setattr(F, "gelu", gelu),
        "torch.nn.functional.silu": lambda m: m.setattr(F, "silu", functools.partial(gelu, approximate="x")),
        "timm.layers.mlp.GluMlp": lambda m: m.setattr(timm_mlp, "GluMlp", MyMlp),
    }
    for where, patch in kinds.items():
        with monkeypatch.context() as m:
            patch(m)
            found = replaced_library_code()
            assert set(found) == {where}, where
        assert replaced_library_code() == {}
    # the same patch is the same key in any process; other code is another
    with monkeypatch.context() as m:
        m.setattr(timm_mlp.Mlp, "forward", _mine)
        first = replaced_library_code()
        m.setattr(timm_mlp.Mlp, "forward", lambda self, x: x * 0.25)
        assert replaced_library_code() != first


@needs_cifar
def test_a_run_with_a_patched_library_is_recomputed_and_the_plain_one_resumed(
    tmp_path, cifar_card, monkeypatch
):
    """The probe, in both orders: the patched run gets its own id and its own numbers (equal to a fresh run of
    the patched code), the plain run before and after it is one run (resumed, 0 computed, same numbers), and
    the board keeps the two apart."""
    kw = dict(data=str(CIFAR10_TEST), limit=24, cache_dir=str(tmp_path / "cache"), progress=False)
    plain = rbvit.evaluate(str(cifar_card), "clean", out=str(tmp_path / "a"), **kw)
    with monkeypatch.context() as m:
        m.setattr(timm_mlp.Mlp, "forward", _mine)
        patched = rbvit.evaluate(str(cifar_card), "clean", out=str(tmp_path / "a"), **kw)
        fresh = rbvit.evaluate(str(cifar_card), "clean", out=str(tmp_path / "fresh"), **kw)
    assert patched.attrs["conditions_computed"] == 1
    assert set(patched.run_id).isdisjoint(plain.run_id)
    key = ["condition", "metric"]
    values = patched.set_index(key).value
    assert values.equals(fresh.set_index(key).value)
    assert values.loc[("clean", "nll")] != plain.set_index(key).value.loc[("clean", "nll")]
    again = rbvit.evaluate(str(cifar_card), "clean", out=str(tmp_path / "a"), **kw)
    assert again.attrs["conditions_computed"] == 0
    assert set(again.run_id) == set(plain.run_id)
    assert again.set_index(key).value.equals(plain.set_index(key).value)
    board = rbvit.board_rows(str(tmp_path / "a"))
    assert board["label"].nunique() == 2
    assert board["weights"].str.contains("library-code:").sum() == len(patched)
    # the rows say what was replaced; the plain run's say nothing of it
    configs = [json.loads(c) for c in board["config"]]
    assert sorted({tuple(c.get("replaced_code", ())) for c in configs}) == [
        (),
        ("timm.layers.mlp.Mlp.forward",),
    ]


def test_device_processes_and_ray_workers_refuse_a_patched_library(tmp_path, monkeypatch):
    """Fresh processes import the unpatched package: their numbers would be stored under the patch's key."""
    from robustbench_vit.engine.multidevice import evaluate_on_devices
    from robustbench_vit.engine.options import RunOptions
    from robustbench_vit.suites import make_suite

    monkeypatch.setattr(timm_mlp.Mlp, "forward", _mine)
    opts = RunOptions(out="/nonexistent-never-written", devices="cpu,cpu")
    with pytest.raises(ConfigError, match=r"timm\.layers\.mlp\.Mlp\.forward"):
        evaluate_on_devices("test_vit", make_suite("clean"), opts)
    assert_ray_sweep_refused(tmp_path)
