"""How half-precision matmuls accumulate, which library computes convolutions and the math libraries'
environment (oneDNN's bf16 math mode, the TF32 overrides) are part of what computed a number: cuBLAS's reduced-precision reductions turned off, fp16 accumulation turned on
(``torch.backends.cuda.matmul.allow_fp16_accumulation = True``: a whole fp16 GEMM summed in fp16), cuDNN or
oneDNN disabled key the run, the sweep cell and the processes a run starts, and the ``dtype`` column names
them. A fresh process keys nothing, so default runs keep their ids."""

from __future__ import annotations

import io
import os
import sys

import pandas as pd
import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.device import _KERNEL_SWITCHES, apply_numerics, changed_kernel_switches, numerics_key
from robustbench_vit.engine.rows import computed_dtype
from tests.helpers import CIFAR10_TEST, clean_sweep_statuses, needs_cifar, rbvit_cli, write_cifar_card

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


def _eval(env: dict[str, str], *args: str) -> pd.DataFrame:
    """``rbvit eval ... --format json`` in a fresh process with ``env`` added (the math libraries read their
    environment when they start, so only a fresh process computes under it); its rows with their stored
    ``dtype``."""
    r = rbvit_cli("eval", *args, "--format", "json", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pd.read_json(io.StringIO(r.stdout), lines=True)
    stored = rbvit.load_results(args[args.index("--out") + 1])
    dtype = stored.drop_duplicates("run_id").set_index("run_id").dtype
    return rows.assign(dtype=rows.run_id.map(dtype))


@needs_cifar
def test_onednns_bf16_math_mode_is_another_run(tmp_path):
    """``ONEDNN_DEFAULT_FPMATH_MODE=BF16 rbvit eval ...`` (Intel's advice for fast inference on Xeons) computes
    fp32 convolutions in bf16 on CPUs with AMX or AVX512-BF16, as this run's patch embedding: the rows said
    ``fp32`` under the plain run's id, and the plain run then resumed those numbers. Now the environment keys
    the run and labels its dtype; the plain run is computed as a fresh one, and resumed after."""
    card = str(write_cifar_card(tmp_path / "card"))
    args = [
        card,
        "-s",
        "clean",
        "--data",
        str(CIFAR10_TEST),
        "--limit",
        "20",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    out = ["--out", str(tmp_path / "out")]
    bf16 = _eval({"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}, "-m", *args, *out)
    assert set(bf16.dtype) == {"fp32 ONEDNN_DEFAULT_FPMATH_MODE=BF16"}
    plain = _eval({}, "-m", *args, *out)
    fresh = _eval({}, "-m", *args, "--out", str(tmp_path / "fresh"))
    assert set(plain.dtype) == {"fp32"} and set(plain.run_id).isdisjoint(bf16.run_id)
    assert plain.value.tolist() == fresh.value.tolist()
    strict = _eval({"ONEDNN_DEFAULT_FPMATH_MODE": "strict"}, "-m", *args, *out)  # the default, spelt out
    assert set(strict.run_id) == set(plain.run_id)


def test_ray_workers_start_with_the_drivers_math_environment(monkeypatch):
    """Ray's workers are started with the driver's math-library environment (a ``runtime_env``), since the
    libraries read it when they start; a plain environment passes none, so tasks keep their workers."""
    import types

    from robustbench_vit.sweeps import ray_executor

    seen: list[dict] = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: True,
        remote=lambda **options: seen.append(options) or (lambda fn: types.SimpleNamespace(remote=fn)),
        wait=lambda pending, num_returns: (pending[:num_returns], pending[num_returns:]),
        get=lambda refs: refs,
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    cell = lambda c, out: (c, os.environ.get("NVIDIA_TF32_OVERRIDE"))  # noqa: E731
    assert ray_executor.run_cells_on_ray(["a"], "out", cell) == [("a", None)]
    assert "runtime_env" not in seen[-1]
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert ray_executor.run_cells_on_ray(["a"], "out", cell) == [("a", "0")]
    assert seen[-1]["runtime_env"] == {"env_vars": {"NVIDIA_TF32_OVERRIDE": "0"}}
