"""Float32 precision switches set away from PyTorch's defaults (``torch.set_float32_matmul_precision``, the
``fp32_precision`` switches, the legacy ``allow_tf32`` flags) compute another number: they key the run and
the sweep cell, and the ``dtype`` column names them, so a TF32 or bf16-matmul run is never resumed as, or
pooled with, a float32 one. Reading them never raises, whichever API set them."""

from __future__ import annotations

import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.device import changed_float32_precision, float32_precision
from robustbench_vit.engine.rows import accelerator
from tests.helpers import CIFAR10_TEST, clean_sweep_statuses, needs_cifar, write_cifar_card

#: every level of the fp32_precision switches (torch >= 2.9), restored after each test
_LEVELS = [
    ("",),
    ("mkldnn",),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
    ("cuda", "matmul"),
    ("cudnn",),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
]


def _level(path: tuple[str, ...]):
    obj = torch.backends
    for part in path:
        obj = getattr(obj, part) if part else obj
    return obj


@pytest.fixture(autouse=True)
def _restore_precision():
    if not hasattr(torch.backends, "fp32_precision"):
        pytest.skip("torch < 2.9 has no fp32_precision switches")
    assert changed_float32_precision() == {}, "the tests start with PyTorch's defaults"
    saved = {path: _level(path).fp32_precision for path in _LEVELS}
    yield
    for path, value in saved.items():
        _level(path).fp32_precision = value
    # torch keeps the legacy flags apart, and reading them raises while they disagree with the switches
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = True
    assert changed_float32_precision() == {}
    assert not torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_defaults_are_no_change_and_each_api_is_read():
    assert changed_float32_precision() == {}
    torch.set_float32_matmul_precision("high")  # the legacy API ...
    assert changed_float32_precision()["cuda.matmul"] == "tf32"
    torch.set_float32_matmul_precision("highest")
    assert changed_float32_precision() == {}
    torch.backends.cudnn.allow_tf32 = False
    assert changed_float32_precision()["cudnn.conv"] == "ieee"
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # ... and the new one
    assert changed_float32_precision() == {"mkldnn.matmul": "bf16"}


def test_the_accelerator_record_never_reads_the_legacy_flags(monkeypatch):
    """Once the new switches are set, reading ``allow_tf32`` raises: the GPU record reads the switches."""
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    with pytest.raises(RuntimeError):
        _ = torch.backends.cuda.matmul.allow_tf32
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    record = accelerator(torch.device("cuda"))
    assert record["matmul_tf32"] is True and record["cudnn_tf32"] is True
    assert record["cudnn"] == 91002  # which library chose the convolution kernels
    assert float32_precision()["cuda.matmul"] == "tf32"


@needs_cifar
def test_a_run_with_other_float32_precision_is_another_run(tmp_path):
    card = str(write_cifar_card(tmp_path / "card"))
    out = tmp_path / "out"
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False)
    first = rbvit.evaluate(card, "clean", out=out, **kw)
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    other = rbvit.evaluate(card, "clean", out=out, **kw)
    assert other.attrs["conditions_computed"] == 1
    assert set(other.run_id).isdisjoint(first.run_id)
    assert set(other.dtype) == {"fp32 mkldnn.matmul=bf16"}
    torch.backends.mkldnn.matmul.fp32_precision = "none"
    again = rbvit.evaluate(card, "clean", out=out, **kw)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(first.run_id)
    board = rbvit.build_leaderboard(out)
    assert set(board.query("metric == 'top1'").label) == {
        "cifar_vit [fp32]",
        "cifar_vit [fp32 mkldnn.matmul=bf16]",
    }


@needs_cifar
def test_a_sweep_cell_reruns_under_other_float32_precision(tmp_path):
    run = clean_sweep_statuses(tmp_path)
    assert run() == ["done"] and run() == ["skipped"]
    torch.set_float32_matmul_precision("high")
    assert run() == ["done"]


@needs_cifar
def test_a_float64_default_dtype_never_reaches_a_number(tmp_path):
    """``torch.set_default_dtype(torch.float64)`` in a notebook: models are still built in float32 and the
    perturbations drawn as in a fresh process, so the numbers equal the fp32 rows they are stored as."""
    card = str(write_cifar_card(tmp_path / "card"))
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False, suite_params={"radius": 2})
    expected = rbvit.evaluate(card, ["clean", "fourier_heatmap"], **kw)
    torch.set_default_dtype(torch.float64)
    try:
        got = rbvit.evaluate(card, ["clean", "fourier_heatmap"], **kw)
        loaded = rbvit.load_model(card, device="cpu")
        assert torch.get_default_dtype() == torch.float64  # the caller's default is left as it was
    finally:
        torch.set_default_dtype(torch.float32)
    assert got.value.tolist() == expected.value.tolist()
    assert {p.dtype for p in loaded.net.parameters()} == {torch.float32}


@needs_cifar
def test_a_callers_autocast_never_reaches_a_number(tmp_path):
    """``with torch.autocast("cpu", dtype=torch.bfloat16): rbvit.evaluate(...)`` in a notebook: the model, the
    blur's convolution and everything else computed in bf16 under rows saying ``fp32`` and the fp32 run id
    (nll 7.6e-4 off), so a plain run resumed those numbers. Inside a run the caller's autocast is off; its
    numbers equal a plain run's, and ``dtype="bf16"`` still asks for reduced precision."""
    card = str(write_cifar_card(tmp_path / "card"))
    params = {"corruptions": ["gaussian_blur"], "severities": [3]}
    kw = dict(data=str(CIFAR10_TEST), limit=20, progress=False, suite_params=params)
    expected = rbvit.evaluate(card, ["clean", "corruptions"], **kw)
    reduced = rbvit.evaluate(card, ["clean", "corruptions"], dtype="bf16", **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = rbvit.evaluate(card, ["clean", "corruptions"], **kw)
        asked = rbvit.evaluate(card, ["clean", "corruptions"], dtype="bf16", **kw)
        assert torch.is_autocast_enabled("cpu")  # the caller's context is left as it was
    assert set(got.dtype) == {"fp32"} and got.value.tolist() == expected.value.tolist()
    assert asked.value.tolist() == reduced.value.tolist() != expected.value.tolist()
