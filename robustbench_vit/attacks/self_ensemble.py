"""ViT self-ensemble (Naseer et al. 2022, "On Improving Adversarial Transferability of Vision
Transformers", ICLR): the class token after every block, passed through the model's final norm
and head, is a classifier of its own; the source loss sums their cross-entropies. ViT/DeiT (incl.
the distillation token: timm's head averages both) use every transformer block; CaiT, whose class
token enters only in the class-attention stage, uses those blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_vit.device import autocast
from robustbench_vit.errors import ConfigError
from robustbench_vit.models.loading import LoadedModel

__all__ = ["SelfEnsemble", "parse_blocks"]


def parse_blocks(spec: str, depth: int) -> list[int]:
    """``all`` -> every block, ``last`` -> the final block, ``0,5,11`` -> those blocks (negatives allowed)."""
    s = spec.strip().lower()
    if s == "all":
        return list(range(depth))
    if s == "last":
        return [depth - 1]
    try:
        blocks = sorted({int(b) % depth for b in s.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--ensemble {spec!r} must be all, last or a block list like 0,5,11") from None
    if not blocks:
        raise ConfigError("--ensemble names no block")
    return blocks


class SelfEnsemble(nn.Module):
    """Takes RGB in [0, 1]; returns a list of logits, one per selected block's class token."""

    def __init__(self, model: LoadedModel, blocks: str = "all") -> None:
        super().__init__()
        net = model.net
        self.cait = getattr(net, "blocks_token_only", None) is not None  # CaiT: class-attention stage
        token_head = (
            getattr(net, "global_pool", None) == "token" and getattr(net, "cls_token", None) is not None
        )
        if not token_head or not hasattr(net, "blocks") or not hasattr(net, "forward_head"):
            raise ConfigError(
                f"{model.spec.name} has no class-token head (Swin, PiT pooling heads, CNNs ...); the self-ensemble "
                "needs a ViT/DeiT/CaiT-style model; use --ensemble none"
            )
        self.model = model
        # CaiT's class token exists only in its class-attention blocks: the ensemble runs over those.
        depth = len(net.blocks_token_only) if self.cait else len(net.blocks)
        self.blocks = parse_blocks(blocks, depth)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.model.net
        h, w = self.model.data_config.image_size
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        z = self.model.module.normalize(x)
        outs = []
        with autocast(x.device, self.model.module.amp_dtype):
            if self.cait:
                t = net.pos_drop(net.patch_embed(z) + net.pos_embed)
                t = net.blocks(t)
                cls = net.cls_token.expand(t.shape[0], -1, -1)
                for i, blk in enumerate(net.blocks_token_only):
                    cls = blk(t, cls)
                    if i in self.blocks:
                        outs.append(net.forward_head(net.norm(torch.cat((cls, t), dim=1))).float())
                return outs
            t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(z))))
            for i, blk in enumerate(net.blocks):
                t = blk(t)
                if i in self.blocks:
                    outs.append(net.forward_head(net.norm(t)).float())
        return outs
