"""CLS-token attention of a timm Vision Transformer, used as a saliency map.

Follows DINO's visualisation (Caron et al. 2021) as used by IPViT: the last block's attention
from the class token to every patch token, for one head or averaged over heads.
"""

from __future__ import annotations

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.models.probes import attention_from_tokens, patch_grid, resize_to

__all__ = ["cls_attention", "patch_grid"]


def _check(model: LoadedModel) -> None:
    net = model.net
    if getattr(net, "cls_token", None) is None or not hasattr(net, "blocks"):
        raise ConfigError(
            f"{model.spec.name} has no class token; name a ViT/DeiT/DINO model (e.g. dino_s16) as saliency source"
        )
    attn = getattr(net.blocks[-1], "attn", None)
    if attn is None or not hasattr(attn, "qkv"):
        raise ConfigError(f"{model.spec.name}: last block has no standard qkv attention to read")


@torch.no_grad()
def cls_attention(model: LoadedModel, x: torch.Tensor, *, head: int | str = 1) -> torch.Tensor:
    """(B, rows, cols) attention of the class token to each patch in the last block.

    Args:
        model: a loaded timm ViT (``vit_*``, ``deit_*``, DINO) with a class token.
        x: (B, 3, H, W) RGB in [0, 1]; resized to the model's input size if it differs.
        head: head index, or ``mean`` for the average over heads.
    """
    _check(model)
    net = model.net
    x = resize_to(x, model.data_config.image_size)
    captured: list[torch.Tensor] = []
    attn = net.blocks[-1].attn
    hook = attn.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        net.forward_features(model.module.normalize(x))
    finally:
        hook.remove()
    weights = attention_from_tokens(attn, captured[0].float())  # (B, heads, N, N)
    b, nh = weights.shape[:2]
    prefix = int(getattr(net, "num_prefix_tokens", 1))
    cls_to_patch = weights[:, :, 0, prefix:]
    if head == "mean":
        sal = cls_to_patch.mean(dim=1)
    else:
        hi = int(head)
        if not 0 <= hi < nh:
            raise ConfigError(f"attention head {hi} out of range (model has {nh} heads)")
        sal = cls_to_patch[:, hi]
    gh, gw = patch_grid(model)
    return sal.reshape(b, gh, gw)
