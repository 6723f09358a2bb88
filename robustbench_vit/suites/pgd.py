"""``pgd``: white-box robustness to L-inf / L2 PGD in [0, 1] pixel space (Madry et al. 2018),
with our batched torch PGD (default) or foolbox's LinfPGD / L2PGD (reference backend)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import torch

from robustbench_vit.attacks import PGD, parse_eps, unique_eps_labels
from robustbench_vit.attacks.base import Norm
from robustbench_vit.attacks.pgd import Keep
from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import ClassificationAccumulator, MetricValue
from robustbench_vit.suites.base import (
    AT_LEAST_ONE,
    POSITIVE,
    Condition,
    EvalContext,
    Suite,
    derive_seed,
    register_suite,
    seed_of,
)
from robustbench_vit.suites.seeding import global_rng

__all__ = ["PGDSuite", "default_epsilons", "adversarial_metrics"]

log = logging.getLogger(__name__)


def default_epsilons(norm: str, size: tuple[int, int]) -> tuple[str, ...]:
    """Budgets as the field reports them, by input size.

    CIFAR size (<= 64 px): L-inf 8/255, L2 0.5 (RobustBench). ImageNet size: L-inf 1/255, 2/255, 4/255
    (4/255 is RobustBench's ImageNet budget), L2 3.0 (Salman et al. 2020, "Do Adversarially Robust
    ImageNet Models Transfer Better?"; an L2 norm grows with the pixel count, so CIFAR's 0.5 is a much
    smaller per-pixel change at 224 px).
    """
    small = max(size) <= 64
    if norm == "l2":
        return ("0.5",) if small else ("3.0",)
    return ("8/255",) if small else ("1/255", "2/255", "4/255")


def adversarial_metrics(
    cond: Condition,
    clean: ClassificationAccumulator,
    adv: ClassificationAccumulator,
    targeted: bool = False,
    targets: torch.Tensor | None = None,
) -> list[tuple[Condition, MetricValue]]:
    """robust_accuracy, clean_accuracy (same images) and attack_success_rate (of clean-correct images)."""
    c, a = clean.correct(), adv.correct()
    n = len(c)
    cc = int(c.sum())
    fooled = int((c & ~a).sum())
    return [
        (cond, MetricValue("robust_accuracy", float(a.mean()) if n else float("nan"), n)),
        (cond, MetricValue("clean_accuracy", float(c.mean()) if n else float("nan"), n)),
        (cond, MetricValue("attack_success_rate", fooled / cc if cc else float("nan"), cc)),
    ]


@register_suite("pgd")
@dataclass(frozen=True)
class PGDSuite(Suite):
    """White-box PGD: robust accuracy per epsilon (worst case over restarts), clean accuracy on the
    same images, attack success rate; FGSM is ``steps=1, random_start=false, rel_step=1``.

    Parameters:
        norm: ``linf`` or ``l2``. epsilons: e.g. ``1/255,2/255,4/255`` (defaults by input size).
        steps: iterations. rel_step: step size = rel_step * eps / steps (2.5, Madry et al.).
        random_start: uniform start in the ball. restarts: independent runs, per-image worst case.
        targeted: random target class != label per image (seeded); success = target reached.
        backend: ``torch`` (ours) or ``foolbox`` (reference).
        keep: ``first_success`` (default: per image, the first iterate that fools the model -- the
            worst case found, so at least as strong as final-step PGD) or ``last`` (the final iterate,
            as foolbox/torchattacks report it). Torch backend only; rows of the foolbox backend say ``last``.
    """

    paper: ClassVar[str] = "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks"
    needs_grad: ClassVar[bool] = True
    headline: ClassVar[tuple[tuple[str, str], ...]] = (("*", "robust_accuracy"), ("*", "clean_accuracy"))

    norm: Norm = "linf"
    epsilons: tuple[str, ...] = ()
    steps: Annotated[int, AT_LEAST_ONE] = 10
    rel_step: Annotated[float, POSITIVE] = 2.5
    random_start: bool = True
    restarts: Annotated[int, AT_LEAST_ONE] = 1
    targeted: bool = False
    backend: Literal["torch", "foolbox"] = "torch"
    keep: Keep = "first_success"

    def libraries(self) -> tuple[str, ...]:
        return ("foolbox",) if self.backend == "foolbox" else ()

    def __post_init__(self) -> None:
        # one spelling per budget (4/255.0 is 4/255): one epsilon is one condition, one board column
        object.__setattr__(self, "epsilons", unique_eps_labels(self.epsilons, "suite parameter epsilons"))
        for e in self.epsilons:
            eps = parse_eps(e)
            if self.norm == "linf" and not 0 <= eps <= 1:
                raise ConfigError(f"L-inf epsilon {e!r} must be in [0, 1]: images are in [0, 1] (e.g. 4/255)")
            if eps < 0:
                raise ConfigError(f"epsilon {e!r} must be >= 0")
        if self.steps < 1 or self.restarts < 1:
            raise ConfigError("steps and restarts must be >= 1")

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        eps_list = self.epsilons or unique_eps_labels(
            default_epsilons(self.norm, ctx.model.data_config.image_size), "default epsilons"
        )
        conds = []
        for e in eps_list:
            eps = parse_eps(e)
            params = {
                "norm": self.norm,
                "eps": eps,
                "eps_str": e,
                "steps": self.steps,
                "step_size": self.rel_step * eps / max(1, self.steps),
                "random_start": self.random_start,
                "restarts": self.restarts,
                "targeted": self.targeted,
                "backend": self.backend,
                "keep": "last" if self.backend == "foolbox" else self.keep,
            }
            conds.append(Condition(f"{self.norm}/eps={e}", eps, params))
        return conds

    def variants(self, cond: Condition) -> list[Condition]:
        return [Condition(f"{cond.name}/clean", 0.0, {**cond.params, "variant": "clean"}), cond]

    def condition_metrics(self, results):  # type: ignore[no-untyped-def]
        (_, clean), (cond, adv) = results
        return adversarial_metrics(cond, clean, adv)

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        p = cond.params
        target = y
        if self.targeted:
            c = ctx.model.label_space.num_classes
            target = (y + torch.randint(1, c, y.shape, generator=generator).to(y.device)) % c
        if self.backend == "foolbox":
            x_adv = _foolbox_pgd(ctx, x, target, p, generator)
        else:
            atk = PGD(
                norm=self.norm,
                eps=p["eps"],
                steps=self.steps,
                step_size=p["step_size"],
                random_start=self.random_start,
                restarts=self.restarts,
                targeted=self.targeted,
                keep=self.keep,
            )
            x_adv = atk(ctx.model, x, target, generator=generator).x_adv
        return torch.cat([x, x_adv.detach()])


def _foolbox_pgd(
    ctx: EvalContext, x: torch.Tensor, y: torch.Tensor, p: dict, generator: torch.Generator
) -> torch.Tensor:
    import foolbox as fb

    fmodel = fb.PyTorchModel(ctx.model.module, bounds=(0, 1), device=x.device)
    cls = fb.attacks.LinfPGD if p["norm"] == "linf" else fb.attacks.L2PGD
    attack = cls(abs_stepsize=p["step_size"], steps=p["steps"], random_start=p["random_start"])
    criterion = (
        fb.criteria.TargetedMisclassification(y) if p["targeted"] else fb.criteria.Misclassification(y)
    )
    best = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    # foolbox draws its random start from the global RNG
    with global_rng(derive_seed(seed_of(generator, 62), "foolbox"), x.device):
        for r in range(max(1, p["restarts"])):
            _, adv, success = attack(fmodel, x, criterion, epsilons=p["eps"])
            keep = success & ~done if r > 0 else torch.ones_like(success)
            best[keep] = adv[keep]
            done |= success
    return best
