"""Projected gradient descent and its transfer variants (FGSM, MI-FGSM, DI, TI).

- PGD: Madry et al. 2018; L-inf steps along sign(grad), L2 steps along grad / ||grad||.
- FGSM: Goodfellow et al. 2015 (one step of size eps, no random start).
- MI-FGSM: Dong et al. 2018, momentum g <- mu g + grad / mean(|grad|).
- DI: Xie et al. 2019, input diversity (random resize + random pad, with probability p).
- TI: Dong et al. 2019, translation invariance (gradient smoothed by a Gaussian kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from robustbench_vit.attacks.base import Attack
from robustbench_vit.device import to_device
from robustbench_vit.errors import ConfigError

__all__ = ["PGD", "KEEP", "DI_RESIZE_RATIO", "input_diversity", "translation_kernel", "cross_entropy_loss"]


def cross_entropy_loss(out: torch.Tensor | list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Per-sample CE; a list of logits (self-ensemble) sums the CE of every member."""
    outs = out if isinstance(out, list) else [out]
    return sum(F.cross_entropy(o.float(), y, reduction="none") for o in outs)  # type: ignore[return-value]


#: ATViT's DI draws the resized side in [224, 256] for 224 px inputs: the range is 256/224 of the side
DI_RESIZE_RATIO = 256 / 224


def input_diversity(
    x: torch.Tensor, *, prob: float, generator: torch.Generator, ratio: float = DI_RESIZE_RATIO
) -> torch.Tensor:
    """DI transform as in ATViT (Naseer et al. 2022): with probability ``prob``, nearest-resize the batch
    to a random side ``rnd`` in [H, floor(ratio*H)] (both ends included), zero-pad it at a random offset
    to floor(ratio*H) and nearest-resize back to H. One draw per batch, like the reference."""
    if prob < 1 and float(torch.rand((), generator=generator)) >= prob:
        return x
    h = x.shape[-1]
    top = max(h + 1, int(h * ratio + 1e-9))
    rnd = int(torch.randint(h, top + 1, (), generator=generator))
    pad = top - rnd
    up = int(torch.randint(0, pad + 1, (), generator=generator))
    left = int(torch.randint(0, pad + 1, (), generator=generator))
    out = F.interpolate(x, size=(rnd, rnd), mode="nearest")
    out = F.pad(out, (left, pad - left, up, pad - up), value=0.0)
    return F.interpolate(out, size=x.shape[-2:], mode="nearest")


def translation_kernel(size: int = 15, sigma: float = 3.0) -> torch.Tensor:
    """TI kernel as in ATViT: a normalised size x size Gaussian over integer offsets -size//2..size//2
    with standard deviation ``sigma`` pixels (15 x 15, sigma 3 there); applied with zero padding."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"TI kernel size must be odd and positive, got {size}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * float(sigma) ** 2))
    g = g / g.sum()
    return torch.outer(g, g).float()


Keep = Literal["first_success", "last"]
KEEP: tuple[str, ...] = get_args(Keep)


class PGD(Attack):
    """Iterative gradient attack in [0, 1] pixel space (FGSM when ``steps=1``, no random start).

    Args:
        norm: ``linf`` or ``l2``; eps: radius; steps; step_size (absolute, default 2.5 eps / steps);
        random_start: uniform start inside the ball; restarts: independent runs, worst case kept;
        targeted: descend the CE of the given targets instead of ascending the CE of the labels;
        momentum: MI-FGSM decay mu (0 = plain PGD); di_prob: DI probability (0 = off);
        ti_kernel: TI Gaussian kernel size (0 = off; L-inf only); ti_sigma: its standard deviation in pixels.
        keep: ``first_success`` returns, per image, the first iterate the forward pass showed to succeed
            (the worst case found; default for white-box evaluation) -- ``last`` returns the final iterate
            for every image, like foolbox/torchattacks and the transfer reference code (ATViT), where
            stopping early would leave images that already fool the source unperturbed.
        loss: per-sample loss of (outputs, labels) to maximise (default CE, summed over a list).
    """

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        targeted: bool = False,
        momentum: float = 0.0,
        di_prob: float = 0.0,
        ti_kernel: int = 0,
        ti_sigma: float = 3.0,
        keep: str = "first_success",
        loss: Callable[..., torch.Tensor] = cross_entropy_loss,
    ) -> None:
        super().__init__(norm=norm, eps=eps, restarts=restarts, targeted=targeted)
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / max(1, self.steps)
        self.random_start, self.momentum, self.di_prob, self.ti_kernel = (
            random_start,
            momentum,
            di_prob,
            ti_kernel,
        )
        if keep not in KEEP:
            raise ConfigError(f"keep {keep!r} not in {KEEP}")
        self.ti_sigma, self.keep = float(ti_sigma), keep
        self.loss = loss

    def _random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.norm == "linf":
            noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * self.eps
        else:
            d = torch.randn(x.shape, generator=generator)
            d = d / d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
            r = torch.rand(x.shape[0], generator=generator) ** (1.0 / x[0].numel())
            noise = d * (r * self.eps).view(-1, *[1] * (x.dim() - 1))
        return (x + to_device(noise, x.device, x.dtype)).clamp(0, 1)

    def run(self, forward, x, y, *, generator):  # type: ignore[no-untyped-def]
        x = x.detach().float()
        x_adv = self._random_start(x, generator) if self.random_start and self.eps > 0 else x.clone()
        g = torch.zeros_like(x)
        kernel = translation_kernel(self.ti_kernel, self.ti_sigma).to(x.device) if self.ti_kernel else None
        # Keep the first iterate that succeeds (when the forward pass shows it): with a fixed seed,
        # more steps can then never lower the success set, and nothing found on the way is lost.
        best, found = x_adv.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            inp = (
                input_diversity(x_adv, prob=self.di_prob, generator=generator) if self.di_prob > 0 else x_adv
            )
            with torch.enable_grad():
                out = forward(inp)
                loss = self.loss(out, y)
                if self.targeted:
                    loss = -loss
                (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            if self.keep == "first_success" and isinstance(out, torch.Tensor) and self.di_prob == 0:
                pred = out.detach().argmax(1)
                hit = (pred == y if self.targeted else pred != y) & ~found
                # a where, not best[hit] = ...: boolean indexing would make the host wait every step
                best = torch.where(hit.view(-1, *[1] * (x.dim() - 1)), x_adv.detach(), best)
                found |= hit
            grad = grad.float()
            if kernel is not None:
                c = grad.shape[1]
                k = kernel.view(1, 1, *kernel.shape).expand(c, 1, *kernel.shape)
                grad = F.conv2d(grad, k, padding=kernel.shape[-1] // 2, groups=c)
            if self.momentum > 0:
                g = self.momentum * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                grad = g
            x_adv = x_adv.detach()
            if self.norm == "linf":
                x_adv = x_adv + self.step_size * grad.sign()
            else:
                n = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                x_adv = x_adv + self.step_size * grad / n
            x_adv = self._project(x_adv, x)
        return torch.where(found.view(-1, 1, 1, 1), best, x_adv.detach())

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        from robustbench_vit.attacks.base import project

        return project(x_adv, x, self.eps, self.norm)
