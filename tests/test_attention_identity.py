"""The kernel attention runs with is part of what computed a number: timm's fused attention turned off
(``TIMM_FUSED_ATTN=0``, ``timm.layers.set_fused_attn(False)``: the manual softmax path, other roundings)
and torch's scaled-dot-product backends disabled key the run, the sweep cell and stored adversarials,
and the ``dtype`` column names them, so such a run is never resumed as, or pooled with, a default one.
A fresh process keys nothing, so default runs keep their ids."""

from __future__ import annotations

import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.device import changed_attention_kernels, numerics_key
from tests.helpers import CIFAR10_TEST, clean_sweep_statuses, needs_cifar, write_cifar_card

timm_config = pytest.importorskip("timm.layers.config")


@pytest.fixture(autouse=True)
def _restore_kernels():
    assert changed_attention_kernels() == {}, "the tests start with the defaults"
    saved = (timm_config._USE_FUSED_ATTN, timm_config._EXPORTABLE)
    yield
    timm_config._USE_FUSED_ATTN, timm_config._EXPORTABLE = saved
    for backend in ("flash", "mem_efficient", "math", "cudnn"):
        getattr(torch.backends.cuda, f"enable_{backend}_sdp")(True)
    assert changed_attention_kernels() == {}


def test_each_switch_is_read_and_defaults_key_nothing():
    import timm.layers

    assert numerics_key() == {}
    timm.layers.set_fused_attn(False)
    assert changed_attention_kernels() == {"timm_fused_attn": {"level": 0, "exportable": False}}
    timm.layers.set_fused_attn(True)
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_math_sdp(False)
    assert numerics_key() == {"attention_kernels": {"sdpa_disabled": ["flash", "math"]}}


@needs_cifar
def test_a_run_with_timms_attention_unfused_is_another_run(tmp_path):
    """The same card computed with timm's manual attention: computed again under its own run id and dtype
    label (its logits round otherwise: the reason it is keyed); back at the default, the
    first run is resumed."""
    import timm.layers

    card = str(write_cifar_card(tmp_path / "card"))
    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False, save_samples=True)
    first = rbvit.evaluate(card, "clean", out=out, **kw)
    timm.layers.set_fused_attn(False)
    other = rbvit.evaluate(card, "clean", out=out, **kw)
    assert other.attrs["conditions_computed"] == 1
    assert set(other.run_id).isdisjoint(first.run_id)
    assert set(other.dtype) == {"fp32 timm_fused_attn=0"}
    nll = {d: float(df.query("metric == 'nll'").value.iloc[0]) for d, df in (("a", first), ("b", other))}
    assert nll["a"] == pytest.approx(nll["b"], rel=1e-4)
    timm.layers.set_fused_attn(True)
    again = rbvit.evaluate(card, "clean", out=out, **kw)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(first.run_id)


@needs_cifar
def test_a_sweep_cell_reruns_with_a_disabled_attention_backend(tmp_path):
    run = clean_sweep_statuses(tmp_path)
    assert run() == ["done"] and run() == ["skipped"]
    torch.backends.cuda.enable_flash_sdp(False)
    assert run() == ["done"]


@needs_cifar
def test_device_processes_compute_with_the_parents_switches(tmp_path):
    """``--devices`` shares run in fresh interpreters: they take the parent's float32 precision and
    attention switches, so their rows carry the parent's run id and dtype label and the parent's final
    pass finds every condition done (with a fresh interpreter's defaults it would compute them all again)."""
    import timm.layers

    card = str(write_cifar_card(tmp_path / "card"))
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False, out=str(tmp_path / "out"))
    timm.layers.set_fused_attn(False)
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        rows = rbvit.evaluate(
            card, "occlusion", devices=("cpu", "cpu"), suite_params={"fractions": "0,0.5"}, **kw
        )
        assert rows.attrs["conditions_computed"] == 0
        assert set(rows.dtype) == {"fp32 mkldnn.matmul=bf16 timm_fused_attn=0"}
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = "none"


def test_a_ray_task_applies_the_drivers_switches_first():
    from robustbench_vit.device import numerics_key
    from robustbench_vit.sweeps.ray_executor import _with_numerics

    torch.backends.cuda.enable_flash_sdp(False)
    settings = numerics_key()
    torch.backends.cuda.enable_flash_sdp(True)  # a fresh worker: the defaults
    seen = _with_numerics(lambda cell, out: (cell, out, changed_attention_kernels()), settings)("c", "o")
    assert seen == ("c", "o", {"sdpa_disabled": ["flash"]})
