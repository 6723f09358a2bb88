"""Device and precision selection."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch

from robustbench_vit.errors import ConfigError

__all__ = [
    "select_device",
    "autocast_dtype",
    "autocast",
    "to_device",
    "DTYPES",
    "float32_precision",
    "changed_float32_precision",
    "float32_key",
    "numerics_key",
    "changed_attention_kernels",
    "changed_kernel_switches",
    "numerics_environment",
    "apply_numerics",
    "float32_default",
    "no_caller_autocast",
]

DTYPES = ("fp32", "bf16", "fp16")


def select_device(device: str | None = None) -> torch.device:
    """``None``/``auto`` picks cuda > mps > cpu; otherwise the named device (checked)."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    if (
        dev.type == "cuda"
        and dev.index is not None
        and torch.cuda.is_available()
        and dev.index >= torch.cuda.device_count()
    ):
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"--device {device}: MPS is not available on this machine (use cpu or auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    return dev


def autocast_dtype(dtype: str) -> torch.dtype | None:
    """Map ``fp32``/``bf16``/``fp16`` to the autocast dtype (``None`` = full precision)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} not in {DTYPES}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_device(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t.to(device, dtype)`` without making the host wait for the device.

    A plain ``.to("cuda")`` of a pageable CPU tensor synchronises the stream: the host waits until all
    queued work (the previous batch's forward pass) is done, and the GPU then idles while the next
    batch is prepared. Here a CPU tensor bound for CUDA is copied through page-locked memory without
    blocking, ordered on the current stream (PyTorch's caching host allocator keeps the buffer until
    the copy has run).
    """
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory().to(device, non_blocking=True)
        return t if dtype is None else t.to(dtype)
    return t.to(device) if dtype is None else t.to(device, dtype)


#: the float32 precision PyTorch computes with by default, per backend operation (the ``fp32_precision``
#: switches of torch >= 2.9: cuDNN convolutions and RNNs run as TF32, everything else in IEEE float32)
_FP32_DEFAULTS = {
    "mkldnn.matmul": "ieee",
    "mkldnn.conv": "ieee",
    "mkldnn.rnn": "ieee",
    "cuda.matmul": "ieee",
    "cudnn.conv": "tf32",
    "cudnn.rnn": "tf32",
}


def float32_precision() -> dict[str, str]:
    """The precision each backend runs float32 matmuls and convolutions in now (``ieee``, ``tf32`` or
    ``bf16``), as set by ``torch.set_float32_matmul_precision``, ``torch.backends.*.allow_tf32`` or the
    ``fp32_precision`` switches; read without the legacy flags, which raise once the new switches are used."""
    backends = torch.backends
    if not hasattr(backends, "fp32_precision"):  # torch < 2.9: the legacy flags only
        matmul = torch.get_float32_matmul_precision()
        cpu = {"highest": "ieee", "high": "ieee", "medium": "bf16"}.get(matmul, matmul)
        tf32 = "tf32" if backends.cudnn.allow_tf32 else "ieee"
        return {
            **{f"mkldnn.{op}": cpu if op == "matmul" else "ieee" for op in ("matmul", "conv", "rnn")},
            "cuda.matmul": "tf32" if backends.cuda.matmul.allow_tf32 else "ieee",
            "cudnn.conv": tf32,
            "cudnn.rnn": tf32,
        }
    out = {}
    for key in _FP32_DEFAULTS:
        backend, op = key.split(".")
        chain = (getattr(getattr(backends, backend), op, None), getattr(backends, backend), backends)
        values = [getattr(level, "fp32_precision", "none") for level in chain if level is not None]
        out[key] = next((v for v in values if v not in (None, "none")), "ieee")
    return out


def changed_float32_precision() -> dict[str, str]:
    """The backends whose float32 precision differs from PyTorch's default (``{}`` in a fresh process): a
    run computed with TF32 or bf16 matmuls is another run than a float32 one, as a bf16 run is."""
    now = float32_precision()
    return {k: v for k, v in now.items() if v != _FP32_DEFAULTS[k]}


def float32_key() -> dict[str, Any]:
    """The part of a run's key (and a sweep cell's) that names float32 precision switches set away from
    PyTorch's defaults (``torch.set_float32_matmul_precision("high")`` in a notebook: TF32 or bf16 matmuls);
    empty in a fresh process, so runs with the defaults keep their keys."""
    changed = changed_float32_precision()
    return {"float32_precision": changed} if changed else {}


#: torch's scaled-dot-product attention backends (``torch.backends.cuda.enable_*_sdp``), on by default
_SDPA_BACKENDS = ("flash", "mem_efficient", "math", "cudnn")


def changed_attention_kernels() -> dict[str, Any]:
    """The switches away from their defaults that choose the kernel attention is computed with (``{}`` in
    a fresh process): timm's fused attention (``TIMM_FUSED_ATTN=0``, ``timm.layers.set_fused_attn(False)``,
    exportable mode; a timm model takes it when built: the manual softmax path rounds otherwise) and
    torch's scaled-dot-product backends disabled (``torch.backends.cuda.enable_flash_sdp(False)``, ...)."""
    out: dict[str, Any] = {}
    timm_config = sys.modules.get("timm.layers.config")  # never imported for this: unread, it is unset
    if timm_config is not None:
        fused = int(getattr(timm_config, "_USE_FUSED_ATTN", 1))
        exportable = bool(getattr(timm_config, "_EXPORTABLE", False))
        if fused != 1 or exportable:
            out["timm_fused_attn"] = {"level": fused, "exportable": exportable}
    off = [b for b in _SDPA_BACKENDS if not getattr(torch.backends.cuda, f"{b}_sdp_enabled", lambda: True)()]
    if off:
        out["sdpa_disabled"] = off
    return out


#: switches (``torch.backends.<path>``) that choose how half-precision matmuls accumulate and which kernel
#: library computes convolutions, with PyTorch's defaults: cuBLAS's reduced-precision reductions of fp16/bf16
#: GEMMs (and their split-K), fp16 accumulation (a whole fp16 GEMM summed in fp16), cuDNN and oneDNN on
_KERNEL_SWITCHES = {
    "cuda.matmul.allow_fp16_reduced_precision_reduction": True,
    "cuda.matmul.allow_fp16_reduced_precision_reduction_split_k": True,
    "cuda.matmul.allow_bf16_reduced_precision_reduction": True,
    "cuda.matmul.allow_bf16_reduced_precision_reduction_split_k": True,
    "cuda.matmul.allow_fp16_accumulation": False,
    "cudnn.enabled": True,
    "mkldnn.enabled": True,
}


def _switch(path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    obj: Any = torch.backends
    for part in parents:
        obj = getattr(obj, part)
    return obj, name


def changed_kernel_switches() -> dict[str, bool]:
    """The kernel switches of :data:`_KERNEL_SWITCHES` set away from PyTorch's defaults (``{}`` in a fresh
    process): ``torch.backends.cuda.matmul.allow_fp16_accumulation = True`` sums a whole fp16 GEMM in fp16,
    ``torch.backends.mkldnn.enabled = False`` computes CPU convolutions with other kernels (other roundings),
    so a run under them is another run. A switch this torch does not have is left out."""
    out = {}
    for path, default in _KERNEL_SWITCHES.items():
        obj, name = _switch(path)
        try:
            value = bool(getattr(obj, name))
        except (AttributeError, RuntimeError):  # an older torch without the switch
            continue
        if value != default:
            out[path] = value
    return out


#: environment variables the math libraries read when they start, which change how float32 is computed, with
#: the value that changes nothing: oneDNN's default floating-point math mode (``ONEDNN_DEFAULT_FPMATH_MODE=BF16``
#: computes fp32 convolutions in bf16 on CPUs with AMX or AVX512-BF16; ``DNNL_`` is its former name), NVIDIA's
#: TF32 override of cuBLAS and cuDNN, and PyTorch's TF32 override of cuBLAS
_NUMERICS_ENVIRONMENT = {
    "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
    "DNNL_DEFAULT_FPMATH_MODE": "STRICT",
    "NVIDIA_TF32_OVERRIDE": None,
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0",
}


def numerics_environment() -> dict[str, str]:
    """The variables of :data:`_NUMERICS_ENVIRONMENT` set to a value that changes how float32 is computed
    (``{}`` in a plain environment): ``ONEDNN_DEFAULT_FPMATH_MODE=BF16 rbvit eval ...`` computed the fp32 rows
    of a plain run with bf16 convolutions, under its run id."""
    out = {}
    for name, neutral in _NUMERICS_ENVIRONMENT.items():
        value = os.environ.get(name, "").strip()
        if value and value.upper() != (neutral or "").upper():
            out[name] = value
    return out


def numerics_key() -> dict[str, Any]:
    """:func:`float32_key` plus the attention kernel switches (:func:`changed_attention_kernels`) and the
    half-precision accumulation and convolution library switches (:func:`changed_kernel_switches`) set away
    from their defaults, and the math libraries' environment (:func:`numerics_environment`): the part of a run's
    key, a sweep cell's and stored adversarials' that names how the same model computes. Empty in a fresh
    process of a plain environment, so default runs keep their keys."""
    kernels = changed_attention_kernels()
    switches = changed_kernel_switches()
    env = numerics_environment()
    return {
        **float32_key(),
        **({"attention_kernels": kernels} if kernels else {}),
        **({"kernel_switches": switches} if switches else {}),
        **({"environment": env} if env else {}),
    }


def apply_numerics(numerics: dict[str, Any]) -> None:
    """Set this (fresh) process's float32 precision, attention and kernel switches to those another process's
    :func:`numerics_key` names: a ``--devices`` share or a Ray task then computes, and keys its rows, as
    the process that started it would, never with the defaults of a fresh interpreter."""
    backends = torch.backends
    for key, value in numerics.get("float32_precision", {}).items():
        backend, op = key.split(".")
        if hasattr(backends, "fp32_precision"):
            getattr(getattr(backends, backend), op).fp32_precision = value
        elif key == "cuda.matmul":  # torch < 2.9: the legacy flags
            backends.cuda.matmul.allow_tf32 = value == "tf32"
        elif key == "cudnn.conv":
            backends.cudnn.allow_tf32 = value == "tf32"
        elif key == "mkldnn.matmul":
            torch.set_float32_matmul_precision("medium" if value == "bf16" else "highest")
    kernels = numerics.get("attention_kernels", {})
    if "timm_fused_attn" in kernels:
        import timm.layers.config as timm_config

        timm_config._USE_FUSED_ATTN = int(kernels["timm_fused_attn"]["level"])
        timm_config._EXPORTABLE = bool(kernels["timm_fused_attn"]["exportable"])
    for backend in kernels.get("sdpa_disabled", []):
        getattr(backends.cuda, f"enable_{backend}_sdp")(False)
    # the math libraries read their environment when they start: set before their first use
    for name, value in numerics.get("environment", {}).items():
        os.environ.setdefault(name, value)
    switches = numerics.get("kernel_switches", {})
    for path, value in switches.items():
        base = path.removesuffix("_split_k")
        obj, name = _switch(base)
        split_k = f"{base}_split_k"
        if split_k in switches:  # torch takes a reduction and its split-K as one (bool, bool) setting
            setattr(obj, name, (switches.get(base, _KERNEL_SWITCHES[base]), switches[split_k]))
        else:
            setattr(obj, name, value)


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """Tensors made without a dtype are float32 inside, whatever default the caller set: after
    ``torch.set_default_dtype(torch.float64)`` in a notebook, models would be built and perturbations drawn
    in float64, numbers computed otherwise than the rows' ``fp32`` says."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


#: the device types whose autocast a caller may have entered around a call
_AUTOCAST_TYPES = ("cpu", "cuda", "mps", "xpu")


def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except (TypeError, RuntimeError):  # torch < 2.4 reads CPU and CUDA apart; other types have no autocast
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled()) if device_type == "cuda" else False


@contextlib.contextmanager
def no_caller_autocast() -> Iterator[None]:
    """Autocast that a caller entered around the call is off inside: under a notebook's ``with
    torch.autocast("cpu", dtype=torch.bfloat16): rbvit.evaluate(...)``, models, perturbations and attacks
    computed in bf16 what the rows called ``fp32`` (and keyed as it, so a plain run resumed those numbers).
    A run computes at the precision its rows name; ``dtype=`` asks for reduced precision."""
    with contextlib.ExitStack() as stack:
        for device_type in _AUTOCAST_TYPES:
            if _autocast_on(device_type):
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield
