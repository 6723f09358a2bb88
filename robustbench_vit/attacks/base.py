"""Attack base class (foolbox-style: the base owns the loop, subclasses implement ``run``).

Pixel contract: images and adversarial examples are RGB in [0, 1]; ``eps`` is measured there
(L-inf: max absolute pixel change, e.g. 4/255; L2: Euclidean norm over all C*H*W values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, final, get_args

import torch

from robustbench_vit.errors import ConfigError

__all__ = [
    "Attack",
    "AttackResult",
    "parse_eps",
    "eps_label",
    "unique_eps_labels",
    "project",
    "NORMS",
    "LossFn",
]

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = get_args(Norm)

#: (model outputs for x_adv, labels) -> per-sample loss to *maximise*
LossFn = Callable[[torch.Tensor | list[torch.Tensor], torch.Tensor], torch.Tensor]


def parse_eps(value: str | float) -> float:
    """``"4/255"`` -> 0.01568..., ``"0.5/255"`` -> 0.00196..., ``"0.5"`` -> 0.5; NaN, infinities and negative
    values are refused."""
    try:
        if isinstance(value, (int, float)):
            eps = float(value)
        else:  # Fraction reads "4/255" but not a decimal numerator ("0.5/255", as papers write it)
            num, slash, den = value.strip().partition("/")
            if slash and (not den.strip() or "/" in den):
                raise ValueError(value)
            eps = float(Fraction(num.strip()) / Fraction(den.strip() or "1"))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ConfigError(f"epsilon {value!r} must be a number or a fraction like 4/255") from None
    if not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"epsilon {value!r} must be a finite number >= 0")
    return eps


def eps_label(value: str | float) -> str:
    """One spelling per budget, so that one epsilon is one condition however it was written: ``4/255.0``,
    ``8/510`` and ``0.01568627450980392`` are all ``4/255``. The shorter of ``k/255`` (when ``k`` has at most
    two decimals) and the decimal to 12 significant digits (``0.5``, ``3.0``: floats one rounding apart are one
    budget); a zero budget is ``0``."""
    eps = parse_eps(value)
    if eps == 0:
        return "0"
    decimal = format(eps, ".12g")
    if "." not in decimal and "e" not in decimal:
        decimal += ".0"  # as Python writes a whole float: the L2 default 3.0
    k = eps * 255
    if abs(k - round(k, 2)) <= 1e-9 * max(1.0, k):
        fraction = f"{round(k, 2):.2f}".rstrip("0").rstrip(".") + "/255"
        if len(fraction) < len(decimal):
            return fraction
    return decimal


def unique_eps_labels(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``values`` by their :func:`eps_label`; one budget given twice (``4/255,8/510``) is refused, since it
    would be one condition evaluated twice under two names."""
    labels = tuple(eps_label(v) for v in values)
    for i, label in enumerate(labels):
        if label in labels[:i]:
            first = values[labels.index(label)]
            raise ConfigError(
                f"{what} lists the budget {label} twice ({first!r} and {values[i]!r}); keep one"
            )
    return labels


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project onto the eps-ball around x (in ``norm``) intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        delta = delta * torch.clamp(eps / n, max=1.0)
    return (x + delta).clamp(0.0, 1.0)


@dataclass
class AttackResult:
    x_adv: torch.Tensor  # (B, C, H, W) in [0, 1]
    success: torch.Tensor  # bool (B,): misclassified (untargeted) / target reached (targeted)


class Attack:
    """Runs ``restarts`` independent attacks and keeps, per image, the first successful example.

    Subclasses implement :meth:`run` (one attack from x); the base checks inputs, re-projects and
    clamps the result (so a subclass bug cannot leave the threat model), and evaluates success.
    """

    def __init__(self, *, norm: str, eps: float, restarts: int = 1, targeted: bool = False) -> None:
        if norm not in NORMS:
            raise ConfigError(f"norm {norm!r} not in {NORMS}")
        if eps < 0:
            raise ConfigError(f"epsilon must be >= 0, got {eps}")
        self.norm, self.eps, self.restarts, self.targeted = norm, float(eps), int(restarts), targeted

    def run(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        raise NotImplementedError

    @final
    def __call__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> AttackResult:
        """Attack ``x`` (labels, or targets when targeted); ``predict`` gives logits for success checks."""
        if x.min() < 0 or x.max() > 1:
            raise ConfigError("attacks take images in [0, 1] (normalisation belongs inside the model)")
        predict = predict or (lambda t: forward(t))  # type: ignore[assignment,return-value]
        best = x.clone()
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for r in range(max(1, self.restarts)):
            todo = (~success).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            adv = project(
                self.run(forward, x[todo], y[todo], generator=generator).detach(),
                x[todo],
                self.eps,
                self.norm,
            )
            with torch.no_grad():
                pred = predict(adv).argmax(1)  # type: ignore[union-attr]
            hit = pred == y[todo] if self.targeted else pred != y[todo]
            keep = (
                hit if r > 0 else torch.ones_like(hit)
            )  # restart 0 fills everything; later ones only successes
            best[todo[keep]] = adv[keep]
            success[todo] = hit
        return AttackResult(best, success)
