"""A cheap, deterministic CIFAR-10 classifier for attack tests, and the AutoAttack call they share."""

from __future__ import annotations

import torch

from tests.helpers import CIFAR10_TEST

PRE = {
    "input_size": [3, 32, 32],
    "mean": [0.0] * 3,
    "std": [1.0] * 3,
    "crop_pct": 1.0,
    "label_space": "cifar10",
}


class Smooth(torch.nn.Module):
    """A cheap linear CIFAR classifier on 8x8-pooled colour: an 8/255 budget breaks some images, not all."""

    def __init__(self, quantise: bool = False, noisy: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = torch.nn.Linear(192, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 192, generator=g))
            self.fc.bias.zero_()
        self.quantise, self.noisy = quantise, noisy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantise:  # a non-differentiable input layer: zero gradient almost everywhere
            x = x + (torch.round(x * 8) / 8 - x).detach()
            x = x.detach() * 1.0 + 0.0 * x  # the gradient does not reach the input at all
        z = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        if self.noisy:
            z = z + 0.05 * torch.randn_like(z)
        return self.fc(z)


def run_autoattack(model: torch.nn.Module, **params):  # type: ignore[no-untyped-def]
    """``rbvit.evaluate`` of ``model`` under the autoattack suite on CIFAR-10 (60 images by default)."""
    import robustbench_vit as rbvit

    kw = {
        "data": str(CIFAR10_TEST),
        "limit": params.pop("limit", 60),
        "batch_size": params.pop("batch_size", 60),
    }
    kw["out"] = params.pop("out", None)
    for opt in ("cache_dir", "shard"):
        if opt in params:
            kw[opt] = params.pop(opt)
    return rbvit.evaluate(
        model, "autoattack", preprocessing=PRE, name="smooth", progress=False, suite_params=params, **kw
    )


def first_value(df, metric: str, cond_suffix: str = "") -> float:  # type: ignore[no-untyped-def]
    """The first value of ``metric`` (in a condition ending with ``cond_suffix``)."""
    d = (
        df[(df.metric == metric) & df.condition.str.endswith(cond_suffix)]
        if cond_suffix
        else df[df.metric == metric]
    )
    return float(d.value.iloc[0])
