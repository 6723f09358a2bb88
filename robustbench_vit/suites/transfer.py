"""``transfer``: adversarial examples crafted on a source model, evaluated on the target (``--model``).

Attacks follow ATViT (Naseer et al. 2022, ICLR; github.com/Muzammal-Naseer/ATViT ``attack.py``,
``test.py``), point by point:

- ``fgsm``: one step of eps. ``pgd``: 10 steps of 2/255 (a constant in the reference, whatever eps),
  projected to the eps ball, no random start. ``mifgsm``: 10 steps of eps/10 with momentum
  (g <- g + grad / mean|grad|, decay 1). ``dim``: ``mifgsm`` with input diversity on every step.
- DI: nearest-resize to a random side in [224, 256] (for 224 px; 256/224 of the side in general), zero
  pad to 256 at a random offset, nearest-resize back; one draw per batch, probability 1.
- TI: the gradient is smoothed by a 15 x 15 Gaussian (sigma 3 px, zero padding) before momentum.
- Every image runs every iteration (no early stop): the returned example is the last iterate.
- Self-ensemble (``ensemble=all``): the loss sums the cross-entropy of the class token of every block.
- Fooling rate: target prediction on the adversarial image differs from its prediction on the clean
  image. ATViT evaluates every source/target pair on one fixed list of 5,000 ImageNet val images (its
  ``data/image_list.json``, 5 per class, drawn among images ResNet-50 and ViT-S both classify correctly,
  as its README says) and divides by all 5,000: ``fooling_rate_all`` over those
  images is its figure. ``preset=atvit`` is that configuration in one word: ATViT's shipped list
  (``--subset atvit-imagenet-5000``, or ``atvit-imagenet-1000`` as its ``test.py`` passes), its geometry
  (Resize 256 / CenterCrop 224, bilinear, each model's own mean/std) and ``population=all``. Without the
  preset, ``population`` defaults to ``both_correct``: rbvit's stricter restriction to images both the
  source and the target classify correctly, which is not the paper's population.

Deliberate differences (without ``preset=atvit``): the clean images come from the target's own
preprocessing (the reference uses resize 256 / crop 224 for every model); a source with another input size sees them resized bilinearly.
``di``/``ti`` may be combined with any attack (the reference has DI only inside ``dim``).
Adversarial images are crafted once per (source weights, attack config, dataset subset), stored next to
the decoded images as uint8 plus the float16 residual (:mod:`robustbench_vit.attacks.storage`: the last
iterate to ~1e-6, as the reference feeds it; plain uint8 storage moved 3-5 of 100 target predictions at
1/255 in ``benchmarks/bench_transfer_storage.py``), and reused by every target model with the same
input geometry.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.attacks import PGD, eps_label, parse_eps
from robustbench_vit.attacks.pgd import DI_RESIZE_RATIO
from robustbench_vit.attacks.self_ensemble import SelfEnsemble
from robustbench_vit.attacks.storage import STORAGE, decode_adversarial, encode_adversarial, stored_shape
from robustbench_vit.data.filled import FilledArray
from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.data.subset import shipped_subset_items
from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.identity import canonical_json, computing_key, derived_key
from robustbench_vit.metrics.accumulators import MetricValue
from robustbench_vit.models.identity import model_identity
from robustbench_vit.models.loading import LoadedModel, resolve_spec
from robustbench_vit.models.names import RANDOM_SUFFIX
from robustbench_vit.storage.store import safe_name
from robustbench_vit.suites.base import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    Condition,
    EvalContext,
    Suite,
    batch_generator,
    register_suite,
)
from robustbench_vit.suites.seeding import model_rng

__all__ = ["Transfer"]

log = logging.getLogger(__name__)

Attack = Literal["fgsm", "pgd", "mifgsm", "dim"]
Population = Literal["auto", "both_correct", "all"]
Preset = Literal["none", "atvit"]
#: the image lists ATViT evaluates on (shipped in ``robustbench_vit/subsets``)
ATVIT_LISTS = ("atvit-imagenet-5000", "atvit-imagenet-1000")
#: ATViT's PGD step, a constant whatever eps
PGD_STEP = "2/255"


@register_suite("transfer")
@dataclass(frozen=True)
class Transfer(Suite):
    """Fooling rate and accuracy of the target model on adversarial examples crafted on ``source``.

    Parameters (defaults as ATViT, Naseer et al. 2022):
        source: model reference (zoo name, timm:<arch>, card .json) the examples are crafted on.
        source_pretrained: ``false`` builds the source with seeded random weights (tests, CI).
        attack: ``fgsm``, ``pgd`` (step 2/255, projected), ``mifgsm`` (step eps/steps, momentum) or
            ``dim`` (``mifgsm`` + input diversity).
        eps: L-inf radius (16/255). steps: iterations (10). step: step size (default: 2/255 for pgd,
            eps/steps otherwise). momentum: decay of mifgsm/dim (1.0).
        di: input diversity on any attack (implied by ``dim``); di_prob (1.0).
        ti: translation-invariant gradients, Gaussian ``ti_kernel`` (15) x ``ti_kernel``, ``ti_sigma`` (3).
        ensemble: ``none`` (source logits), ``all``, ``last`` or a block list (ViT self-ensemble).
        population: ``both_correct`` (images source and target both classify correctly) or ``all``;
            ``auto`` (default): ``all`` with ``preset=atvit``, else ``both_correct``.
        preset: ``atvit``: ATViT's configuration (its image list, which the run must select with
            ``--subset atvit-imagenet-5000``; Resize 256 / CenterCrop 224 geometry; population ``all``).
    """

    #: 2: ATViT defaults, every image runs every iteration, fooling rate over ``population``;
    #: 3: adversarials stored as the float iterate (uint8 + float16 residual), not rounded to uint8;
    #: 4: the source attacks (and is checked against) each image's class in its own label space, not the
    #: target's class index (a source whose classes are ordered otherwise was attacked towards wrong labels);
    #: 5: the stored adversarials are keyed by the run's dtype (the source crafts at it): an fp32 run reused
    #: the pixels a bf16 run of the same images had crafted
    version: ClassVar[int] = 5
    paper: ClassVar[str] = (
        "Naseer et al. 2022, On Improving Adversarial Transferability of Vision Transformers"
    )
    needs_grad: ClassVar[bool] = False

    source: str = ""
    source_pretrained: bool = True
    attack: Attack = "pgd"
    eps: str = "16/255"
    steps: Annotated[int, AT_LEAST_ONE] = 10
    step: str = ""
    momentum: Annotated[float, NON_NEGATIVE] = 1.0
    di: bool = False
    di_prob: Annotated[float, UNIT] = 1.0
    ti: bool = False
    ti_kernel: Annotated[int, AT_LEAST_ONE] = 15
    ti_sigma: Annotated[float, POSITIVE] = 3.0
    ensemble: str = "none"
    population: Population = "auto"
    preset: Preset = "none"

    def __post_init__(self) -> None:
        if self.preset == "atvit" and self.population == "both_correct":
            raise ConfigError(
                "preset=atvit divides by every image of ATViT's list: drop population=both_correct"
            )
        if not self.source:
            raise ConfigError("transfer needs a source model: -p source=<model>")
        if not 0 <= self.di_prob <= 1:
            raise ConfigError(f"di_prob must be in [0, 1], got {self.di_prob}")
        if self.ti_kernel < 1 or self.ti_kernel % 2 == 0:
            raise ConfigError(f"ti_kernel must be an odd number of pixels, got {self.ti_kernel}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        object.__setattr__(self, "eps", eps_label(self.eps))  # one spelling per budget: 16/255.0 is 16/255
        eps = parse_eps(self.eps)
        if not 0 < eps <= 1:
            raise ConfigError(
                f"eps {self.eps!r} must be in (0, 1] (L-inf in [0, 1] pixel space, e.g. 16/255)"
            )
        if self.step and not 0 < parse_eps(self.step) <= 1:
            raise ConfigError(f"step {self.step!r} must be in (0, 1] (e.g. 1.6/255)")

    def _attack_config(self) -> dict:
        eps = parse_eps(self.eps)
        steps = 1 if self.attack == "fgsm" else self.steps
        if self.attack == "fgsm":
            step = eps
        elif self.step:
            step = parse_eps(self.step)
        else:
            step = parse_eps(PGD_STEP) if self.attack == "pgd" else eps / steps
        di = self.di or self.attack == "dim"
        return {
            "attack": self.attack,
            "eps": eps,
            "steps": steps,
            "step_size": step,
            "momentum": self.momentum if self.attack in ("mifgsm", "dim") else 0.0,
            "di_prob": self.di_prob if di else 0.0,
            "di_resize_ratio": DI_RESIZE_RATIO if di else 0.0,
            "ti_kernel": self.ti_kernel if self.ti else 0,
            "ti_sigma": self.ti_sigma if self.ti else 0.0,
            "ensemble": self.ensemble,
            "keep": "last",
            "random_start": False,
            "storage": STORAGE,
        }

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        cfg = self._attack_config()
        tag = "+".join(
            [self.attack]
            + (["di"] if self.di and self.attack != "dim" else [])
            + (["ti"] if self.ti else [])
            + ([f"se-{self.ensemble}"] if self.ensemble != "none" else [])
        )
        params = {
            "source_model": ctx.state.get("source_name", self.source),
            "source_weights": ctx.state.get("source_weights", ""),
            **({"image_list": ctx.state["image_list"]} if "image_list" in ctx.state else {}),
            "population": self.effective_population,
            "preset": self.preset,
            **cfg,
        }
        return [Condition(f"{tag}/eps={self.eps}", cfg["eps"], params)]

    @property
    def effective_population(self) -> str:
        if self.population != "auto":
            return self.population
        return "all" if self.preset == "atvit" else "both_correct"

    def data_config(self, model: LoadedModel) -> DataConfig:
        """``preset=atvit``: ATViT's Resize 256 / CenterCrop 224 (bilinear) at the model's input size, its
        own mean/std (as ``test.py``'s ``get_model``); otherwise the model's own preprocessing."""
        dc = model.data_config
        if self.preset != "atvit":
            return dc
        return dataclasses.replace(
            dc,
            crop_pct=224 / 256,
            interpolation="bilinear",
            crop_mode="center",
            source=f"ATViT: Resize(256), CenterCrop(224), bilinear; model's own mean/std ({dc.describe()})",
        )

    def variants(self, cond: Condition) -> list[Condition]:
        return [Condition(f"{cond.name}/clean", 0.0, {**cond.params, "variant": "clean"}), cond]

    def condition_metrics(self, results):  # type: ignore[no-untyped-def]
        (_, clean), (cond, adv) = results
        sc, sa = clean.samples(), adv.samples()
        fooled = sc["pred"] != sa["pred"]
        n = len(fooled)
        src_ok = self._source_correct(sc["index"])
        both = clean.correct() & src_ok
        pop = both if cond.params["population"] == "both_correct" else np.ones(n, dtype=bool)

        def rate(flags: np.ndarray, mask: np.ndarray) -> MetricValue:
            return float(flags[mask].mean()) if mask.any() else float("nan")

        return [
            (cond, MetricValue("fooling_rate", rate(fooled, pop), int(pop.sum()))),
            (cond, MetricValue("fooling_rate_all", rate(fooled, np.ones(n, dtype=bool)), n)),
            (cond, MetricValue("target_accuracy", float(adv.correct().mean()) if n else float("nan"), n)),
            (cond, MetricValue("clean_accuracy", float(clean.correct().mean()) if n else float("nan"), n)),
            (cond, MetricValue("source_clean_accuracy", float(src_ok.mean()) if n else float("nan"), n)),
        ]

    def _source_correct(self, index: np.ndarray) -> np.ndarray:
        flags: FilledArray = self._state["source_correct"]
        return flags.rows(np.asarray(index, dtype=np.int64))[:, 0].astype(bool)

    def referenced_models(self) -> dict[str, tuple[str, bool]]:
        return {"source": (self.source, self.source_pretrained)}

    # --- crafting (once per source x config x subset; cached as uint8 + residual) ----------------------------
    def _check_image_list(self, ctx: EvalContext) -> str:
        """The ATViT list the run evaluates (``preset=atvit`` refuses any other image set)."""
        chosen = {ctx.dataset.items[i] for i in ctx.indices}
        for name in ATVIT_LISTS:
            if chosen == set(shipped_subset_items(name)):
                return name
        raise ConfigError(
            f"preset=atvit evaluates ATViT's image list, not these {len(chosen)} images: "
            f"add --subset {ATVIT_LISTS[0]} (ImageNet val in wnid folders)"
        )

    def prepare(self, ctx: EvalContext) -> None:
        if self.preset == "atvit":
            ctx.state["image_list"] = self._check_image_list(ctx)
        cfg = self._attack_config()
        src_ref = self.source
        spec = resolve_spec(src_ref)
        named = ctx.referenced.get("source")
        parts = {
            # the run's identity of its source (an entry point's as built when the run began)
            "source": named
            if named and "ref" not in named
            else model_identity(spec, pretrained=self.source_pretrained, cache_dir=ctx.cache.root),
            **cfg,
            "seed": ctx.seed,
            # the source computes at the run's precision: bf16 gradients craft other pixels than fp32 ones
            "dtype": ctx.model.dtype,
            **computing_key(),
            "images": ctx.identity,  # the crafted pixels are a function of the evaluated images' content
            # ... and of the code that crafts them: a fix that bumps the suite's version crafts them again, as
            # does that code replaced in memory or edited in a checkout
            "suite_version": self.code_key(),
        }
        if cfg["di_prob"]:  # input diversity draws per batch of ctx.batch_size images: the batch is an input
            parts["batch_size"] = ctx.batch_size
        ident = canonical_json(parts)
        key = derived_key(**parts)[:12]
        d = ctx.cache.dir / f"adv-{safe_name(src_ref)[-40:]}-{key}"
        store = FilledArray(d, stored_shape(ctx.cache.shape), np.uint8)
        # whether the source classifies each image correctly: CRC-checked rows like the images, so a damaged
        # flag is recomputed instead of silently moving an image in or out of the both_correct population
        src_correct = FilledArray(d / "source_correct", (ctx.cache.shape[0], 1), np.uint8)
        (d / "config.json").write_text(ident)
        crafter: dict = {}

        def build() -> None:
            if not crafter:  # the source is built only when something is left to compute
                source = self.load_referenced(ctx, "source")  # checked against the run's identity of it
                crafter.update(
                    source=source,
                    # each dataset class in the source's own label space: the target's indices mean other
                    # classes to a source whose classes are ordered otherwise (a class it lacks is refused)
                    labels=self._source_labels(ctx, source),
                    forward=SelfEnsemble(source, self.ensemble) if self.ensemble != "none" else source,
                    attack=PGD(
                        norm="linf",
                        eps=cfg["eps"],
                        steps=cfg["steps"],
                        step_size=cfg["step_size"],
                        random_start=False,
                        momentum=cfg["momentum"],
                        di_prob=cfg["di_prob"],
                        ti_kernel=cfg["ti_kernel"],
                        ti_sigma=cfg["ti_sigma"] or 3.0,
                        keep="last",
                    ),
                )
                log.info("crafting adversarial examples on %s", source.spec.name)

        def source_input(ix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
            x8 = ctx.cache.batch(ix).to(ctx.device)
            y = torch.from_numpy(crafter["labels"][ix]).to(ctx.device)
            return x8, x8.float() / 255, y, x8.shape[-2:] != crafter["source"].data_config.image_size

        def flags(ix: np.ndarray) -> np.ndarray:
            build()
            source = crafter["source"]
            _, x, y, resize = source_input(ix)
            with torch.no_grad(), model_rng(ctx.seed, int(ix[0]), ctx.device):  # a randomized source's draws
                pred = source(fwd_input(x, source.data_config.image_size) if resize else x).argmax(1)
            return (pred == y).to(torch.uint8).cpu().numpy()[:, None]

        def craft(ix: np.ndarray) -> np.ndarray:
            build()
            source, forward = crafter["source"], crafter["forward"]
            h, w = source.data_config.image_size
            _, x, y, resize = source_input(ix)

            def fwd(t: torch.Tensor):  # type: ignore[no-untyped-def]
                return forward(fwd_input(t, (h, w)) if resize else t)

            gen = batch_generator(ctx.seed, "transfer", key, int(ix[0]))
            with model_rng(ctx.seed, int(ix[0]), ctx.device):
                adv = crafter["attack"](fwd, x, y, generator=gen, predict=source).x_adv
            return encode_adversarial(adv)

        store.fill(ctx.indices, craft, chunk=ctx.batch_size)
        src_correct.fill(ctx.indices, flags, chunk=ctx.batch_size)
        ctx.state["adv_images"] = store.array
        random = parts["source"]["weights"].startswith("random:")
        ctx.state["source_name"] = f"{spec.name}{RANDOM_SUFFIX}" if random else spec.name
        ctx.state["source_weights"] = parts["source"]["weights"]
        self._state["source_correct"] = src_correct

    def _source_labels(self, ctx: EvalContext, source: LoadedModel) -> np.ndarray:
        """Every dataset image's class as an index of the source's label space."""
        try:
            return self.label_map(ctx.dataset, source)[np.asarray(ctx.dataset.targets)]
        except DataError as e:
            raise ConfigError(
                f"transfer source {self.source} cannot be attacked towards these images' classes: {e}"
            ) from None

    @property
    def _state(self) -> dict:
        # frozen dataclass: per-run arrays live in one mutable dict attached on first use
        st = self.__dict__.get("_run_state")
        if st is None:
            st = {}
            object.__setattr__(self, "_run_state", st)
        return st

    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        cond: Condition,
        ctx: EvalContext,
        generator: torch.Generator,
    ) -> torch.Tensor:
        adv = decode_adversarial(ctx.state["adv_images"][idx.numpy()], x.device)
        return torch.cat([x, adv.to(x.dtype)])


def fwd_input(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a batch to a source model's input size (bilinear), as the crafting forward does."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
