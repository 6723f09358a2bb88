"""``transfer``: adversarial examples crafted on a source model, evaluated on the target (``--model``).

Attacks (combinable): FGSM, PGD / I-FGSM, MI-FGSM (momentum), DI (input diversity), TI
(translation-invariant gradients); source loss optionally over the ViT self-ensemble (Naseer et
al. 2022, ICLR). Defaults as in that paper: L-inf eps 16/255, 10 iterations, step eps/10.
Adversarial images are crafted once per (source, attack config, dataset subset), stored as uint8
next to the decoded images, and reused by every target model with the same input geometry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.attacks import PGD, parse_eps
from robustbench_vit.attacks.self_ensemble import SelfEnsemble
from robustbench_vit.data.cache import open_filled_memmap, save_filled
from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics import MetricValue
from robustbench_vit.models.loading import load_model
from robustbench_vit.store import safe_name
from robustbench_vit.suites.base import Condition, EvalContext, Suite, derive_seed, register_suite

__all__ = ["Transfer"]

log = logging.getLogger(__name__)

ATTACKS = ("fgsm", "pgd", "mifgsm")


@register_suite("transfer")
@dataclass(frozen=True)
class Transfer(Suite):
    """Fooling rate and accuracy of the target model on adversarial examples crafted on ``source``.

    Parameters:
        source: model reference (zoo name, timm:<arch>, card .json) the examples are crafted on.
        source_pretrained: ``false`` builds the source with seeded random weights (tests, CI).
        attack: ``fgsm``, ``pgd`` (I-FGSM, no random start) or ``mifgsm``.
        eps: L-inf radius (default 16/255). steps: iterations (10). step: step size (default eps/steps).
        momentum: MI-FGSM decay (1.0). di: input diversity (prob ``di_prob`` = 0.5). ti: translation-
        invariant gradients (Gaussian kernel ``ti_kernel`` = 7).
        ensemble: ``none`` (source logits), ``all``, ``last`` or a block list (ViT self-ensemble).
    """

    paper: ClassVar[str] = "Naseer et al. 2022, On Improving Adversarial Transferability of Vision Transformers"
    needs_grad: ClassVar[bool] = False

    source: str = ""
    source_pretrained: bool = True
    attack: str = "pgd"
    eps: str = "16/255"
    steps: int = 10
    step: str = ""
    momentum: float = 1.0
    di: bool = False
    di_prob: float = 0.5
    ti: bool = False
    ti_kernel: int = 7
    ensemble: str = "none"

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("transfer needs a source model: -p source=<model>")
        if self.attack not in ATTACKS:
            raise ConfigError(f"attack {self.attack!r} not in {ATTACKS}")
        parse_eps(self.eps)

    def _attack_config(self) -> dict:
        eps = parse_eps(self.eps)
        steps = 1 if self.attack == "fgsm" else self.steps
        step = eps if self.attack == "fgsm" else (parse_eps(self.step) if self.step else eps / steps)
        return {"attack": self.attack, "eps": eps, "steps": steps, "step_size": step,
                "momentum": self.momentum if self.attack == "mifgsm" else 0.0,
                "di_prob": self.di_prob if self.di else 0.0, "ti_kernel": self.ti_kernel if self.ti else 0,
                "ensemble": self.ensemble}  # fmt: skip

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        cfg = self._attack_config()
        tag = "+".join([self.attack] + (["di"] if self.di else []) + (["ti"] if self.ti else [])
                       + ([f"se-{self.ensemble}"] if self.ensemble != "none" else []))  # fmt: skip
        params = {"source_model": ctx.state.get("source_name", self.source), **cfg}
        return [Condition(f"{tag}/eps={self.eps}", cfg["eps"], params)]

    def variants(self, cond: Condition) -> list[Condition]:
        return [Condition(f"{cond.name}/clean", 0.0, {**cond.params, "variant": "clean"}), cond]

    def condition_metrics(self, results):  # type: ignore[no-untyped-def]
        (_, clean), (cond, adv) = results
        pc, pa = clean.samples()["pred"], adv.samples()["pred"]
        n = len(pc)
        return [
            (cond, MetricValue("fooling_rate", float((pc != pa).mean()) if n else float("nan"), n)),
            (cond, MetricValue("target_accuracy", float(adv.correct().mean()) if n else float("nan"), n)),
            (cond, MetricValue("clean_accuracy", float(clean.correct().mean()) if n else float("nan"), n)),
        ]

    # --- crafting (once per source x config x subset; cached as uint8) ----------------------------
    def prepare(self, ctx: EvalContext) -> None:
        cfg = self._attack_config()
        src_ref = self.source
        ident = json.dumps({"source": src_ref, "source_pretrained": self.source_pretrained, **cfg, "seed": ctx.seed},
                           sort_keys=True)  # fmt: skip
        key = hashlib.sha256(ident.encode()).hexdigest()[:12]
        d = ctx.cache.dir / f"adv-{safe_name(src_ref)[-40:]}-{key}"
        d.mkdir(parents=True, exist_ok=True)
        images, filled, _ = open_filled_memmap(d, ctx.cache.shape, np.uint8)
        (d / "config.json").write_text(ident)
        todo = ctx.indices[~filled[ctx.indices]]
        source = None
        if len(todo):
            source = load_model(src_ref, device=str(ctx.device), dtype=ctx.model.dtype, pretrained=self.source_pretrained)
            forward = SelfEnsemble(source, self.ensemble) if self.ensemble != "none" else source
            atk = PGD(norm="linf", eps=cfg["eps"], steps=cfg["steps"], step_size=cfg["step_size"], random_start=False,
                      momentum=cfg["momentum"], di_prob=cfg["di_prob"], ti_kernel=cfg["ti_kernel"])  # fmt: skip
            h, w = source.data_config.image_size
            log.info("crafting %d adversarial examples on %s", len(todo), source.spec.name)
            for s in range(0, len(todo), ctx.batch_size):
                ix = todo[s : s + ctx.batch_size]
                x8 = ctx.cache.batch(ix).to(ctx.device)
                x = x8.float() / 255
                y = torch.from_numpy(ctx.labels[ix]).to(ctx.device)
                fwd = forward if x.shape[-2:] == (h, w) else (lambda t: forward(F.interpolate(t, size=(h, w), mode="bilinear")))
                gen = torch.Generator().manual_seed(derive_seed(ctx.seed, "transfer", key, int(ix[0])))
                adv = atk(fwd, x, y, generator=gen, predict=source).x_adv
                r = round(cfg["eps"] * 255 + 1e-6)  # uint8 storage, kept inside the L-inf ball
                adv8 = torch.minimum(torch.maximum((adv * 255).round(), x8.float() - r), x8.float() + r)
                images[ix] = adv8.clamp(0, 255).to(torch.uint8).cpu().numpy()
                images.flush()
                filled[ix] = True
                save_filled(d, filled)
        ctx.state["adv_images"] = images
        ctx.state["source_name"] = source.spec.name if source is not None else _spec_name(src_ref)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, cond: Condition,
                ctx: EvalContext, generator: torch.Generator) -> torch.Tensor:  # fmt: skip
        adv = torch.from_numpy(np.ascontiguousarray(ctx.state["adv_images"][idx.numpy()])).to(x.device).float() / 255
        return torch.cat([x, adv])

    def config(self) -> dict:
        return {"suite": self.name, "version": self.version, **asdict(self)}


def _spec_name(ref: str) -> str:
    from robustbench_vit.models.loading import resolve_spec

    return resolve_spec(ref).name
