"""How half-precision matmuls accumulate and which library computes convolutions is part of what computed a
number: cuBLAS's reduced-precision reductions turned off, fp16 accumulation turned on
(``torch.backends.cuda.matmul.allow_fp16_accumulation = True``: a whole fp16 GEMM summed in fp16), cuDNN or
oneDNN disabled key the run, the sweep cell and the processes a run starts, and the ``dtype`` column names
them. A fresh process keys nothing, so default runs keep their ids."""

from __future__ import annotations

import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.device import _KERNEL_SWITCHES, apply_numerics, changed_kernel_switches, numerics_key
from robustbench_vit.engine.rows import computed_dtype
from tests.helpers import CIFAR10_TEST, clean_sweep_statuses, needs_cifar, write_cifar_card

_MATMUL = torch.backends.cuda.matmul


def _has(switch: str) -> bool:
    """Whether this torch has the cuBLAS switch (split-K and fp16 accumulation are recent)."""
    try:
        getattr(_MATMUL, switch)
    except (AttributeError, RuntimeError):
        return False
    return True


def _reset() -> None:
    for half in ("fp16", "bf16"):
        setattr(_MATMUL, f"allow_{half}_reduced_precision_reduction", True)
    if _has("allow_fp16_accumulation"):
        _MATMUL.allow_fp16_accumulation = False
    torch.backends.cudnn.enabled = True
    torch.backends.mkldnn.enabled = True


@pytest.fixture(autouse=True)
def _restore_switches():
    assert changed_kernel_switches() == {}, "the tests start with PyTorch's defaults"
    yield
    _reset()
    assert changed_kernel_switches() == {}


def test_each_switch_is_read_and_the_defaults_key_nothing():
    assert numerics_key() == {} and computed_dtype("fp16") == "fp16"
    torch.backends.mkldnn.enabled = False
    assert numerics_key() == {"kernel_switches": {"mkldnn.enabled": False}}
    assert computed_dtype("fp32") == "fp32 mkldnn=off"
    torch.backends.mkldnn.enabled = True
    torch.backends.cudnn.enabled = False
    assert changed_kernel_switches() == {"cudnn.enabled": False}
    torch.backends.cudnn.enabled = True
    _MATMUL.allow_fp16_reduced_precision_reduction = False
    assert changed_kernel_switches() == {"cuda.matmul.allow_fp16_reduced_precision_reduction": False}
    _MATMUL.allow_fp16_reduced_precision_reduction = True
    if _has("allow_bf16_reduced_precision_reduction_split_k"):
        _MATMUL.allow_bf16_reduced_precision_reduction = (False, False)
        assert changed_kernel_switches() == {
            "cuda.matmul.allow_bf16_reduced_precision_reduction": False,
            "cuda.matmul.allow_bf16_reduced_precision_reduction_split_k": False,
        }
        _MATMUL.allow_bf16_reduced_precision_reduction = True
    if _has("allow_fp16_accumulation"):
        _MATMUL.allow_fp16_accumulation = True
        assert computed_dtype("fp16") == "fp16 fp16_accumulation=on"


def test_another_process_takes_the_switches_it_is_handed():
    """``--devices`` shares and Ray tasks apply the driver's :func:`numerics_key` in a fresh interpreter: every
    switch (a reduction with its split-K too) comes back as the driver had it."""
    torch.backends.mkldnn.enabled = False
    _MATMUL.allow_fp16_reduced_precision_reduction = False
    if _has("allow_fp16_accumulation"):
        _MATMUL.allow_fp16_accumulation = True
    if _has("allow_bf16_reduced_precision_reduction_split_k"):
        _MATMUL.allow_bf16_reduced_precision_reduction = (False, False)
    driver = numerics_key()
    assert set(driver["kernel_switches"]) <= set(_KERNEL_SWITCHES)
    _reset()  # a fresh worker: the defaults
    apply_numerics(driver)
    assert numerics_key() == driver


@needs_cifar
def test_a_run_with_onednn_off_is_another_run_and_the_default_resumes(tmp_path):
    """The same card with oneDNN's convolutions off: computed again under its own run id and dtype label (the
    patch embedding's convolution rounds otherwise), and back at the default the first run resumes."""
    card = str(write_cifar_card(tmp_path / "card"))
    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False)
    first = rbvit.evaluate(card, "clean", out=out, **kw)
    torch.backends.mkldnn.enabled = False
    other = rbvit.evaluate(card, "clean", out=out, **kw)
    assert other.attrs["conditions_computed"] == 1
    assert set(other.run_id).isdisjoint(first.run_id)
    assert set(other.dtype) == {"fp32 mkldnn=off"}
    nll = [float(df.query("metric == 'nll'").value.iloc[0]) for df in (first, other)]
    assert nll[0] == pytest.approx(nll[1], rel=1e-4)
    torch.backends.mkldnn.enabled = True
    again = rbvit.evaluate(card, "clean", out=out, **kw)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(first.run_id)


@needs_cifar
def test_a_sweep_cell_reruns_with_fp16_accumulation_on(tmp_path):
    if not _has("allow_fp16_accumulation"):
        pytest.skip("this torch has no fp16 accumulation switch")
    run = clean_sweep_statuses(tmp_path)
    assert run() == ["done"] and run() == ["skipped"]
    _MATMUL.allow_fp16_accumulation = True
    assert run() == ["done"]
