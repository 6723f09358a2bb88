"""Read a network's inside: layer outputs, attention weights, and per-block class-token logits.

Layers are chosen per family: a transformer's blocks (``blocks.<i>``), a CNN's residual blocks
(``layer<k>.<j>`` in torchvision/timm ResNets, ``stages.<k>.blocks.<j>`` elsewhere), or timm's
``feature_info`` modules; a user may name any modules. Hooks are removed after every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_vit.errors import ConfigError
from robustbench_vit.models.loading import LoadedModel

__all__ = [
    "attention_from_tokens",
    "auto_layers",
    "layer_table",
    "layer_outputs",
    "attention_weights",
    "mean_attention_distance",
    "patch_grid",
    "block_logits",
]


def _children(net: nn.Module, prefix: str) -> list[str]:
    mod = net.get_submodule(prefix)
    return [f"{prefix}.{n}" for n, _ in mod.named_children()]


def _called_children(net: nn.Module, prefix: str) -> list[str]:
    """The children of a container, descending through containers that forward never calls
    (an ``nn.ModuleList`` is iterated by its parent's ``forward``, never called itself)."""
    out = []
    for n, m in net.get_submodule(prefix).named_children():
        name = f"{prefix}.{n}" if prefix else n
        out += _called_children(net, name) if isinstance(m, nn.ModuleList) else [name]
    return out


def _largest_block_list(net: nn.Module) -> str | None:
    """The container holding the most sub-blocks (a network's main sequence of blocks), shallowest first."""
    best: tuple[int, int, str] | None = None
    for name, m in net.named_modules():
        if name and isinstance(m, (nn.Sequential, nn.ModuleList)):
            key = (len(list(m.children())), -name.count("."), name)
            if key[0] >= 2 and (best is None or key[:2] > best[:2]):
                best = key
    return best[2] if best else None


def auto_layers(net: nn.Module) -> list[str]:
    """The module names whose outputs represent the network's depth (see the module docstring): a
    transformer's ``blocks``, a ResNet's ``layer<k>`` blocks, ``stages``, timm's ``feature_info``, else the
    children of the network's largest block container (``_blocks`` of an EfficientNet-Lite, say), else its
    called children."""
    names = dict(net.named_modules())
    if isinstance(names.get("blocks"), (nn.Sequential, nn.ModuleList)):
        return _called_children(net, "blocks")
    res = [f"layer{k}" for k in range(1, 5) if f"layer{k}" in names]
    if res:
        return [c for s in res for c in _called_children(net, s)]
    if isinstance(names.get("stages"), (nn.Sequential, nn.ModuleList)):
        out = []
        for s in _called_children(net, "stages"):
            out += _called_children(net, f"{s}.blocks") if f"{s}.blocks" in names else [s]
        return out
    info = getattr(net, "feature_info", None)
    if info is not None:
        try:
            mods = [m for m in info.module_name() if m in names]
            if mods:
                return mods
        except (AttributeError, TypeError):
            pass
    container = _largest_block_list(net)
    if container is not None:
        return [c for sibling in _sibling_lists(net, container) for c in _called_children(net, sibling)]
    return _called_children(net, "")


def _sibling_lists(net: nn.Module, container: str) -> list[str]:
    """``layers.2.blocks`` -> ``layers.0.blocks``, ``layers.1.blocks``, ... (the same list in every stage)."""
    parts = container.split(".")
    k = max((i for i, p in enumerate(parts) if p.isdigit()), default=None)
    if k is None:
        return [container]
    names = dict(net.named_modules())
    parent = ".".join(parts[:k])
    siblings = []
    for idx, _ in net.get_submodule(parent).named_children():
        name = ".".join([*parts[:k], idx, *parts[k + 1 :]])
        if name in names:
            siblings.append(name)
    return siblings


def layer_table(net: nn.Module) -> list[dict[str, object]]:
    """Every module of ``net`` (``rbvit ls layers``): name, type, parameters, whether ``layers=auto`` picks
    it; ``nn.ModuleList`` containers are marked, since forward never calls them."""
    auto = set(auto_layers(net))
    rows = []
    for name, m in net.named_modules():
        if not name:
            continue
        rows.append(
            {
                "name": name,
                "type": type(m).__name__
                + (" (container, never called)" if isinstance(m, nn.ModuleList) else ""),
                "params": sum(p.numel() for p in m.parameters()),
                "auto": "yes" if name in auto else "",
            }
        )
    return rows


def check_layers(net: nn.Module, layers: Sequence[str]) -> list[str]:
    """``layers`` (or the automatic choice for ``()``/``auto``) after checking every name exists."""
    chosen = auto_layers(net) if not layers or list(layers) == ["auto"] else list(layers)
    names = dict(net.named_modules())
    missing = [n for n in chosen if n not in names]
    if missing:
        import difflib

        close = difflib.get_close_matches(missing[0], list(names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{type(net).__name__} has no module {missing[0]!r}{hint}")
    if not chosen:
        raise ConfigError(f"{type(net).__name__}: no layers to read")
    return chosen


def _first_tensor(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"layer output of type {type(out).__name__} is not a tensor")


@torch.no_grad()
def layer_outputs(
    model: LoadedModel, x: torch.Tensor, layers: Sequence[str]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(outputs of ``layers`` in order, the model's logits) for RGB ``x`` in [0, 1]."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.net.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, _first_tensor(out).float())
        )
        for name in layers
    ]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    silent = [n for n in layers if n not in captured]
    if silent:
        raise ConfigError(
            f"module {silent[0]!r} of {model.spec.name} never runs in forward (a container?): name the modules "
            f"inside it; rbvit ls layers {model.spec.name} lists them"
        )
    return [captured[n] for n in layers], logits


def _transformer(model: LoadedModel) -> nn.Module:
    net = model.net
    blocks = getattr(net, "blocks", None)
    if blocks is None or not all(hasattr(getattr(b, "attn", None), "qkv") for b in blocks):
        raise ConfigError(f"{model.spec.name} has no transformer blocks with standard qkv attention")
    return net


def attention_from_tokens(attn: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, N) softmax attention of a timm ``Attention`` module for its input tokens."""
    b, n, c = tokens.shape
    nh = attn.num_heads
    bias = None if attn.qkv.bias is None else attn.qkv.bias.float()
    qkv = F.linear(tokens.float(), attn.qkv.weight.float(), bias)
    q, k, _ = qkv.reshape(b, n, 3, nh, -1).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@torch.no_grad()
def attention_weights(model: LoadedModel, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block's (B, heads, N, N) attention, recomputed from the tokens entering its attention."""
    net = _transformer(model)
    tokens: list[torch.Tensor] = []
    hooks = [b.attn.register_forward_pre_hook(lambda _m, args: tokens.append(args[0])) for b in net.blocks]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [attention_from_tokens(b.attn, t) for b, t in zip(net.blocks, tokens)]


def patch_distances(grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """(P, P) Euclidean distances in input pixels between patch centres of a row-major grid."""
    r, c = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    pos = torch.stack([r.flatten() * patch[0], c.flatten() * patch[1]], 1).double()
    return torch.cdist(pos, pos)


def patch_grid(model: LoadedModel) -> tuple[int, int]:
    """(rows, cols) of patch tokens for the input size the model is fed (its data config): a ViT built with
    ``dynamic_img_size`` embeds another grid than the one it was built for (``--img-size``, or a hub config
    without ``fixed_input_size``)."""
    pe = getattr(model.net, "patch_embed", None)
    if pe is None or not hasattr(pe, "grid_size"):
        raise ConfigError(f"{model.spec.name} has no patch embedding; saliency needs a ViT with a CLS token")
    dynamic = getattr(pe, "dynamic_img_size", False) or getattr(model.net, "dynamic_img_size", False)
    if dynamic and hasattr(pe, "dynamic_feat_size"):
        return tuple(int(v) for v in pe.dynamic_feat_size(tuple(model.data_config.image_size)))  # type: ignore[return-value]
    return tuple(int(v) for v in pe.grid_size)  # type: ignore[return-value]


def mean_attention_distance(model: LoadedModel, weights: list[torch.Tensor]) -> torch.Tensor:
    """(blocks, heads) attention distance in input pixels, summed over the batch: for each query patch the
    attention-weighted distance to every key patch (prefix tokens dropped from both sides, weights not
    renormalised, as the Probing-ViTs code does), averaged over query patches. Divide by the image count."""
    net = _transformer(model)
    grid = patch_grid(model)
    patch = tuple(int(v) for v in net.patch_embed.patch_size)
    prefix = int(getattr(net, "num_prefix_tokens", 1))
    p = grid[0] * grid[1]
    dist = patch_distances(grid, patch).to(weights[0].device)  # type: ignore[arg-type]
    out = []
    for w in weights:
        w = w[:, :, prefix:, prefix:].double()
        if w.shape[-1] != p:
            raise ConfigError(f"{model.spec.name}: {w.shape[-1]} patch tokens, expected {p}")
        out.append((w * dist).sum(-1).mean(-1).sum(0))  # (heads,)
    return torch.stack(out).cpu()


@torch.no_grad()
def block_logits(model: LoadedModel, x: torch.Tensor) -> list[torch.Tensor]:
    """Logits of every block's class token through the model's final norm and head (Naseer et al. 2022,
    self-ensemble, Fig. 1): ``forward_head(norm(block_i output))``."""
    net = _transformer(model)
    if not hasattr(net, "forward_head") or not hasattr(net, "norm"):
        raise ConfigError(f"{model.spec.name} has no timm forward_head/norm to read block class tokens")
    outs, _ = layer_outputs(model, x, [f"blocks.{i}" for i in range(len(net.blocks))])
    return [net.forward_head(net.norm(o.to(next(net.parameters()).dtype))).float() for o in outs]


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` resized (bilinear, antialiased) to ``size`` when it differs."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def depth_fraction(i: int, n: int) -> float:
    """Relative depth of layer ``i`` of ``n`` in [0, 1] (for plots across models of different depth)."""
    return 0.0 if n <= 1 else round(i / (n - 1), 6)
