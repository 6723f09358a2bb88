"""A timm architecture name registered again outside timm is another model.

The probe: a notebook's ``@register_model def test_vit(...)`` building its own variant (here: 3 blocks instead
of 6) under timm's name, with timm's pretrained config. timm only warns ("Overwriting test_vit in registry")
and ``timm.create_model("test_vit")`` builds the notebook's network; rbvit keyed a model built by name by
timm's version, so the run resumed the 6-block network's numbers (0 computed, exit 0). Now the entry's code
keys the model (its runs, sweep cells, the models suites build), and processes that would not see the
registration (``--devices``, Ray) refuse it.
"""

from __future__ import annotations

import pytest
import timm.models._registry as timm_registry
from timm.models.vision_transformer import _create_vision_transformer

import robustbench_vit as rbvit
from robustbench_vit.errors import ConfigError
from robustbench_vit.models.identity import architecture_code, timm_entrypoint_code
from robustbench_vit.models.names import resolve_spec
from tests.helpers import IMAGENET_SAMPLES, assert_ray_sweep_refused, needs_imagenet, write_cifar_card


def _shallow_test_vit(pretrained: bool = False, **kwargs):  # type: ignore[no-untyped-def]
    """The user's variant under timm's name: timm's ``test_vit`` with 3 blocks instead of 6."""
    args = dict(patch_size=16, embed_dim=64, depth=3, num_heads=2, mlp_ratio=3, dynamic_img_size=True)
    return _create_vision_transformer("test_vit", pretrained=pretrained, **dict(args, **kwargs))


def _register(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``@register_model`` does to the entry of an existing name (the pretrained config stays timm's)."""
    monkeypatch.setitem(timm_registry._model_entrypoints, "test_vit", _shallow_test_vit)


def test_timms_own_entries_key_nothing_and_a_registered_one_keys_its_code(monkeypatch, tmp_path):
    spec = resolve_spec("timm:test_vit.r160_in1k")
    assert timm_entrypoint_code("test_vit.r160_in1k") is None
    plain = architecture_code(spec)
    assert set(plain) == {"timm"}
    _register(monkeypatch)
    registered = architecture_code(spec)
    assert registered["timm"] == plain["timm"] and registered["entrypoint"]
    card = write_cifar_card(tmp_path / "card", arch="test_vit")  # a card builds the timm name: the same entry
    assert architecture_code(resolve_spec(str(card)))["entrypoint"] == registered["entrypoint"]


@needs_imagenet
def test_a_run_of_the_registered_variant_is_another_run(tmp_path, monkeypatch):
    kw = dict(data=str(IMAGENET_SAMPLES), limit=8, progress=False, pretrained=False)
    shared = dict(out=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), **kw)
    timms = rbvit.evaluate("timm:test_vit", "clean", **shared)
    with monkeypatch.context() as m:
        _register(m)
        mine = rbvit.evaluate("timm:test_vit", "clean", **shared)
        fresh = rbvit.evaluate("timm:test_vit", "clean", out=str(tmp_path / "o2"), **kw)
    assert mine.attrs["conditions_computed"] == 1
    assert set(mine.run_id).isdisjoint(timms.run_id)
    key = ["condition", "metric"]
    assert mine.set_index(key).value.equals(fresh.set_index(key).value)
    nll = [float(df.query("metric == 'nll'").value.iloc[0]) for df in (timms, mine)]
    assert nll[0] != nll[1]  # 3 blocks are not 6
    again = rbvit.evaluate("timm:test_vit", "clean", **shared)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(timms.run_id)


def test_fresh_processes_refuse_a_name_registered_here(tmp_path, monkeypatch):
    """``--devices`` and Ray's workers import timm afresh and would build timm's own ``test_vit`` under the
    registered variant's key: refused in one line, for the evaluated model and for a model a suite builds."""
    from robustbench_vit.engine.multidevice import evaluate_on_devices
    from robustbench_vit.engine.options import RunOptions

    _register(monkeypatch)
    opts = RunOptions(out=str(tmp_path / "out"), devices=("cpu", "cpu"))
    with pytest.raises(ConfigError, match="timm's own 'test_vit'"):
        evaluate_on_devices("timm:test_vit", "clean", opts)
    source = RunOptions(
        out=str(tmp_path / "out"), devices=("cpu", "cpu"), suite_params={"source": "timm:test_vit"}
    )
    with pytest.raises(ConfigError, match="timm's own 'test_vit'"):
        evaluate_on_devices("timm:test_resnet", "transfer", source)
    assert_ray_sweep_refused(tmp_path)
