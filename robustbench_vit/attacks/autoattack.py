"""AutoAttack (Croce & Hein 2020) through ``pyautoattack``, the PyPI packaging of the authors' code
(fra31/auto-attack): their APGD-CE, APGD-T, FAB-T and Square, configured by their own ``AutoAttack``
class for each version, run stage by stage on one batch the way their ``run_standard_evaluation``
runs them (each stage attacks only the images still robust; an image counts as broken by the first
stage whose example the model misclassifies).

Why this package: it is the reference implementation itself (same defaults, seeds and checks), it
declares no dependencies of its own, and its attack objects take any callable ``x -> logits``, so they
run batched on the model's device under our autocast rules (logits in fp32, gradients to the input in
fp32). ``torchattacks`` re-implements the attacks with other defaults (its targeted stages use every
class but one as targets, 999 on ImageNet, where AutoAttack uses 9) and pins ``requests~=2.25``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.replaced_code import ship

__all__ = [
    "VERSIONS",
    "ATTACKS",
    "stages_of",
    "make_autoattack",
    "run_stages",
    "set_apgd_iterations",
    "AANorm",
]

log = logging.getLogger(__name__)

AANorm = Literal["linf", "l2", "l1"]
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
#: the stages of each version, in AutoAttack's order (``custom`` takes ``attacks=``)
VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
ship(__name__, "VERSIONS", VERSIONS)
_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
INSTALL = "pip install 'robustbench_vit[autoattack]' (the pyautoattack package: the authors' AutoAttack code)"


def stages_of(version: str, attacks: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The attacks a version runs, in order; ``custom`` needs ``attacks``."""
    if version == "custom":
        if not attacks:
            raise ConfigError(f"autoattack version=custom needs attacks= (some of {', '.join(ATTACKS)})")
        return tuple(attacks)
    if attacks:
        raise ConfigError("autoattack attacks= is only used with version=custom")
    return VERSIONS[version]


def make_autoattack(
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    norm: str,
    eps: float,
    version: str,
    attacks: tuple[str, ...] = (),
    seed: int = 0,
    device: torch.device | str = "cpu",
    n_restarts: int | None = None,
    n_iter: int | None = None,
    square_queries: int | None = None,
) -> Any:
    """The package's ``AutoAttack`` object for ``forward`` (its sub-attacks configured by the version);
    ``n_restarts``, ``n_iter`` (APGD, APGD-T, FAB) and ``square_queries`` override the version's."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise ConfigError(f"the autoattack suite needs AutoAttack's code: {INSTALL}") from None
    aa = AutoAttack(
        forward,
        norm=_NORMS[norm],  # type: ignore[arg-type]
        eps=eps,
        version=version,  # type: ignore[arg-type]
        attacks=list(attacks) if version == "custom" else None,  # type: ignore[arg-type]
        seed=seed,
        device=device,
    )
    if n_restarts:
        aa.apgd.n_restarts = aa.fab.n_restarts = aa.square.n_restarts = n_restarts
    if n_iter:
        for apgd in (aa.apgd, aa.apgd_targeted):
            set_apgd_iterations(apgd, n_iter)
        aa.fab.n_iter = n_iter
    if square_queries:
        aa.square.n_queries = square_queries
    # untargeted FAB's restarts as the version set them: the package runs every FAB stage over the whole
    # set before FAB-T sets 1 restart, so FAB (``plus``) always has these; batch by batch we restore them
    aa.rbvit_fab_restarts = aa.fab.n_restarts
    return aa


def set_apgd_iterations(apgd: Any, n_iter: int) -> None:
    """``n_iter`` APGD iterations with the step-size checkpoints APGD derives from its own ``n_iter``
    when constructed (``autopgd_base.APGDAttack.__init__``: first checkpoint at 22%, minimum period 6%,
    decrease 3% of the iterations); setting ``n_iter`` alone would keep the 100-iteration schedule."""
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
    apgd.n_iter_min = max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def _run_attack(aa: Any, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One stage on ``(x, y)``, set up exactly as the package's ``run_standard_evaluation`` does."""
    seed = aa.get_seed()
    if attack in ("apgd-ce", "apgd-dlr"):
        aa.apgd.loss = "ce" if attack == "apgd-ce" else "dlr"
        aa.apgd.seed = seed
        return aa.apgd.perturb(x, y)
    if attack in ("fab", "fab-t"):
        aa.fab.targeted = attack == "fab-t"
        # FAB-T runs 1 restart (as the package sets it); FAB the version's, even after an earlier batch's FAB-T
        aa.fab.n_restarts = 1 if attack == "fab-t" else aa.rbvit_fab_restarts
        aa.fab.seed = seed
        return aa.fab.perturb(x, y)
    if attack == "square":
        aa.square.seed = seed
        return aa.square.perturb(x, y)
    if attack == "apgd-t":
        aa.apgd_targeted.seed = seed
        return aa.apgd_targeted.perturb(x, y)
    raise ConfigError(f"unknown AutoAttack attack {attack!r} (known: {', '.join(ATTACKS)})")


def run_stages(
    aa: Any,
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    stages: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every stage on the still-robust images of one batch.

    Returns ``(clean_pred, broken_at, adv_pred)``: ``broken_at`` is -1 for images misclassified
    clean, the index of the first stage that broke the image, or ``len(stages)`` when none did;
    ``adv_pred`` is the prediction on the example that broke it (the clean prediction otherwise).
    """
    if not hasattr(aa, "rbvit_fab_restarts"):  # an AutoAttack object not made by make_autoattack
        aa.rbvit_fab_restarts = aa.fab.n_restarts
    with torch.no_grad():
        clean_pred = forward(x).argmax(1)
    broken_at = torch.full_like(y, len(stages))
    broken_at[clean_pred != y] = -1
    adv_pred = clean_pred.clone()
    for s, attack in enumerate(stages):
        robust = torch.nonzero(broken_at == len(stages)).flatten()
        if len(robust) == 0:
            break
        adv = _run_attack(aa, attack, x[robust].clone(), y[robust].clone())
        with torch.no_grad():
            out = forward(adv).argmax(1)
        fooled = out != y[robust]
        broken_at[robust[fooled]] = s
        adv_pred[robust[fooled]] = out[fooled]
    return clean_pred, broken_at, adv_pred
