"""The evaluable model: :class:`PixelModel` (takes RGB in [0, 1], normalises inside) and :class:`LoadedModel`
(the model with everything a row records about it); any ``nn.Module`` as one (:func:`wrap_module`, the
notebook path), and the content digest that identifies a module's weights when no file does."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_vit.data.labels import LabelSpace, get_label_space
from robustbench_vit.data.preprocessing import DataConfig, check_user_config
from robustbench_vit.device import autocast, autocast_dtype, select_device
from robustbench_vit.errors import ConfigError
from robustbench_vit.fingerprint import runtime_digest, value_digest
from robustbench_vit.models.identity import module_code
from robustbench_vit.models.zoo import ModelSpec, guess_family

logger = logging.getLogger(__name__)

__all__ = [
    "PixelModel",
    "live_state",
    "check_weights",
    "check_normalisation",
    "borrowed",
    "settle_identity",
    "LoadedModel",
    "state_digest",
    "wrap_module",
    "with_preprocessing",
    "PREPROCESSING_FLAGS",
]

#: the preprocessing a user may override, by the names of timm's ``validate.py`` (``--img-size`` ...)
PREPROCESSING_FLAGS = ("img_size", "crop_pct", "interpolation", "mean", "std")


class PixelModel(nn.Module):
    """Wraps a network so it takes float RGB in [0, 1] (N, 3, H, W) and returns fp32 logits.

    Normalisation (mean/std) happens here, inside the model, so perturbations and attacks never
    see normalised tensors and epsilons stay in pixel space.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.amp_dtype = amp_dtype
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        with autocast(x.device, self.amp_dtype):
            out = self.net(x)
        if isinstance(out, (tuple, list)):  # e.g. distilled heads in train mode
            out = out[0]
        elif isinstance(out, Mapping) or hasattr(out, "logits"):  # a Hugging Face ``...Output``, a dict
            logits = out.get("logits") if isinstance(out, Mapping) else out.logits
            if not isinstance(logits, torch.Tensor):
                keys = ", ".join(map(str, out)) if isinstance(out, Mapping) else type(out).__name__
                raise ConfigError(
                    f"the model returned {keys}, not logits: return a tensor or a 'logits' entry"
                )
            out = logits
        return out.float()


@dataclass
class LoadedModel:
    """A ready-to-evaluate model and everything a result row needs to know about it."""

    spec: ModelSpec
    module: PixelModel
    data_config: DataConfig
    label_space: LabelSpace
    device: torch.device
    dtype: str
    weights: str
    #: what the load was made of (:func:`robustbench_vit.models.identity.model_identity`, plus the tensors'
    #: digest for modules and entry points); completed by :func:`robustbench_vit.identity.loaded_model_identity`
    identity: dict[str, Any] = field(default_factory=dict)
    #: :func:`live_state` when :func:`~robustbench_vit.models.loading.load_model` handed the model to a
    #: caller, who may change it before evaluating it (fine-tune a layer, add a hook); None once
    #: :func:`settle_identity` has compared it, or when rbvit loaded the model for its own run
    state_at_load: str | None = field(default=None, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    @property
    def net(self) -> nn.Module:
        """The unwrapped network (takes normalised input)."""
        return self.module.net


def live_state(loaded: LoadedModel) -> str:
    """SHA-256 of everything the loaded model computes with now: the network's tensors, settings, hooks
    and runtime code, the normalisation inside the wrapper and its autocast dtype."""
    return runtime_digest(loaded.module)


def settle_identity(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` with an identity that says what it computes with now: a model changed since
    :func:`load_model` handed it over (weights edited in place, a hook added, a buffer or attribute set)
    gets ``changed_since_load`` (the digest of its live state), so it is never stored or resumed as the
    files it was loaded from; an unchanged one keeps the files' identity."""
    if loaded.state_at_load is None:
        return loaded
    live = live_state(loaded)
    if live == loaded.state_at_load:
        return dataclasses.replace(loaded, state_at_load=None)
    logger.info("%s changed since it was loaded: its runs are keyed by its state now", loaded.spec.name)
    # the rows' weights column says so too: the board never pools it with the model as loaded
    return dataclasses.replace(
        loaded,
        identity={**loaded.identity, "changed_since_load": live},
        weights=f"{loaded.weights} changed:{live[:16]}",
        state_at_load=None,
    )


def check_weights(net: nn.Module, name: str) -> None:
    """The network's floating-point weights are float32: a ``.half()`` or ``.double()`` module would fail on
    float32 pixels (or compute at a precision the rows do not record); reduced precision is autocast's. And
    they are plain tensors, not made under ``torch.inference_mode()``, which autograd cannot use."""
    other = sorted(
        {
            str(t.dtype).replace("torch.", "")
            for t in (*net.parameters(), *net.buffers())
            if t.is_floating_point()
        }
        - {"float32"}
    )
    if other:
        raise ConfigError(
            f"{name} has {', '.join(other)} weights: hand over a float32 model (net.float()) and pass "
            "dtype='bf16' or 'fp16' for reduced precision, which runs under autocast and is recorded in every row"
        )
    if any(t.is_inference() for t in (*net.parameters(), *net.buffers())):
        raise ConfigError(
            f"{name}'s weights were made under torch.inference_mode(), and attacks differentiate through them: "
            "build or load it outside inference_mode"
        )


def check_normalisation(loaded: LoadedModel) -> None:
    """The mean/std the model normalises with are those its data config (recorded in every row) says: a
    ``dataclasses.replace(model, data_config=...)`` would record one normalisation and compute another."""
    module = loaded.module
    for what, said in (("mean", loaded.data_config.mean), ("std", loaded.data_config.std)):
        used = getattr(module, what).detach().cpu().flatten()
        if not torch.equal(used, torch.tensor(said, dtype=used.dtype)):
            raise ConfigError(
                f"{loaded.spec.name}'s data config says {what} {tuple(said)} but the model normalises with "
                f"{tuple(round(v, 6) for v in used.tolist())}: change preprocessing with with_preprocessing()"
            )


def state_digest(net: nn.Module) -> str:
    """SHA-256 (hex) of a module's state: every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key, t in sorted(net.state_dict().items()):
        if not isinstance(t, torch.Tensor) or t.is_quantized:  # packed params of a quantized layer, a dtype
            digest.update(f"{key}\0{value_digest(t)}\n".encode())
            continue
        t = t.detach().cpu().contiguous()
        digest.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def borrowed(net: nn.Module) -> Iterator[None]:
    """Lend a caller's module to a run, which sets it to eval mode, stops its weights' gradients and may
    move it to the run's device: its training modes, ``requires_grad`` flags and device are put back after,
    so a model evaluated between training epochs goes on training."""
    modes = [(m, m.training) for m in net.modules()]
    flags = [(t, t.requires_grad) for t in net.parameters()]
    device = next((t.device for t in (*net.parameters(), *net.buffers())), None)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for t, wanted in flags:
            if t.requires_grad != wanted:  # an inference tensor refuses even a no-op change
                t.requires_grad_(wanted)
        now = next((t.device for t in (*net.parameters(), *net.buffers())), None)
        if device is not None and now != device:
            net.to(device)


def wrap_module(
    net: nn.Module,
    *,
    preprocessing: dict[str, Any] | DataConfig | None = None,
    name: str | None = None,
    device: str | None = None,
    dtype: str = "fp32",
) -> LoadedModel:
    """Any ``nn.Module`` that takes normalised input, ready to evaluate (the notebook path).

    Preprocessing comes from ``preprocessing`` (a :class:`DataConfig` or a timm-style dict: ``input_size``,
    ``mean``, ``std``, optional ``crop_pct``, ``interpolation``, ``label_space``) or, when absent, from the
    module's timm ``pretrained_cfg``. The weights are identified by a hash of the module's tensors, so a
    resumed run never mixes two states of one module.
    """
    cfg: Any = preprocessing
    if cfg is None:
        pcfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None)
        if not pcfg:
            raise ConfigError(
                f"{type(net).__name__} has no timm pretrained_cfg: pass preprocessing={{'input_size': [3, H, W], "
                "'mean': [...], 'std': [...], 'crop_pct': ..., 'interpolation': ..., 'label_space': ...}}"
            )
        from timm.data import resolve_data_config

        cfg = dict(resolve_data_config(pretrained_cfg=dict(pcfg)))
        name = name or pcfg.get("architecture")
    if isinstance(preprocessing, dict):
        check_user_config(preprocessing, f"preprocessing of {name or type(net).__name__}")
    label = cfg.get("label_space", "imagenet1k") if isinstance(cfg, dict) else "imagenet1k"
    data_cfg = (
        cfg
        if isinstance(cfg, DataConfig)
        else DataConfig.from_dict(cfg, source=f"module:{type(net).__name__}")
    )
    state = state_digest(net)
    check_weights(net, name or type(net).__name__)
    # the class name as a folder-safe default (e.g. a private ``_Probe`` class becomes ``probe``)
    name = name or re.sub(r"[^A-Za-z0-9._+-]", "-", type(net).__name__.lower()).lstrip("._+-") or "module"
    spec = ModelSpec(
        name=name,
        source="module",
        arch=f"{type(net).__module__}.{type(net).__qualname__}",
        family=guess_family(name),  # type: ignore[arg-type]
        label_space=label if isinstance(label, str) else "card",
    )
    dev, amp = select_device(device), autocast_dtype(dtype)
    module = PixelModel(net, data_cfg.mean, data_cfg.std, amp).eval().requires_grad_(False).to(dev)
    code = module_code(net)
    # tensors and code: one module with and without a hook is two board entries, never two seeds of one
    weights = f"module sha256:{state[:16]} code:{code[:12]}"
    identity = {
        "spec": spec.to_dict(),
        "pretrained": True,
        "weights": f"sha256:{state}",
        "code": {"modules": code},
    }
    return LoadedModel(spec, module, data_cfg, get_label_space(label), dev, dtype, weights, identity)


def with_preprocessing(loaded: LoadedModel, overrides: Mapping[str, Any]) -> LoadedModel:
    """``loaded`` with its preprocessing overridden by timm ``validate.py``-style values (``img_size`` as
    one side or ``(h, w)``, ``crop_pct``, ``interpolation``, ``mean``, ``std``); the normalisation inside
    the model follows, and the data config's ``source`` says what was overridden (recorded in every row)."""
    loaded = settle_identity(loaded)  # before the wrapper changes: what the caller changed is compared first
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(PREPROCESSING_FLAGS)
    if unknown:
        raise ConfigError(
            f"unknown preprocessing override {sorted(unknown)[0]!r} (known: {', '.join(PREPROCESSING_FLAGS)})"
        )
    if not given:
        return loaded
    dc = loaded.data_config
    changes: dict[str, Any] = {}
    if "img_size" in given:
        size = given["img_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        changes["input_size"] = (dc.input_size[0], h, w)
    for key in ("crop_pct", "interpolation"):
        if key in given:
            changes[key] = given[key]
    for key in ("mean", "std"):
        if key in given:
            values = tuple(float(v) for v in given[key])
            if len(values) != dc.input_size[0]:
                raise ConfigError(
                    f"--{key} needs {dc.input_size[0]} values (one per channel), got {len(values)}"
                )
            changes[key] = values
    said = ", ".join(f"{k}={given[k]}" for k in PREPROCESSING_FLAGS if k in given)
    new = dc.replace(**changes, source=f"{dc.source}; overridden: {said}")
    old = loaded.module  # a new wrapper around the same network: the caller's model is left as it was
    module = PixelModel(old.net, new.mean, new.std, old.amp_dtype).to(old.mean.device).eval()
    return dataclasses.replace(loaded, module=module.requires_grad_(False), data_config=new)
