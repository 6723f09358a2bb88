"""``autoattack``: robust accuracy under AutoAttack (Croce & Hein 2020), as RobustBench reports it.

Per batch every stage attacks the images still robust (the authors' code, :mod:`attacks.autoattack`);
each image's outcome (clean prediction, first stage that broke it, prediction on that example) is
stored as soon as its batch finishes, so a killed run resumes at the batch in flight. Rows: the final
``robust_accuracy`` with ``clean_accuracy`` and ``attack_success_rate``, ``robust_accuracy`` after
every stage (condition ``.../after=<stage>``, as AutoAttack logs it), and two checks from AutoAttack's
own list: ``square_gain`` (images only the black-box Square attack broke: a sign of gradient masking
when above 0.2%) and ``randomized_forward`` (the forward is not deterministic: use ``version=rand``).
Per-sample rows carry each stage's prediction, so the first attack that broke an image is in them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch

from robustbench_vit.attacks import eps_label, parse_eps
from robustbench_vit.attacks.autoattack import AANorm, make_autoattack, run_stages, stages_of
from robustbench_vit.data.filled import FilledArray
from robustbench_vit.errors import ConfigError
from robustbench_vit.identity import derived_key, library_versions, loaded_model_identity
from robustbench_vit.metrics.accumulators import ClassificationAccumulator, MetricValue, register_metric
from robustbench_vit.suites.base import NON_NEGATIVE, Condition, EvalContext, Result, Suite, register_suite
from robustbench_vit.suites.pgd import adversarial_metrics

__all__ = ["AutoAttackSuite", "default_eps", "SQUARE_GAIN_ALERT"]

log = logging.getLogger(__name__)

#: AutoAttack's own threshold (``checks.check_square_sr``): Square alone lowering robust accuracy by more
SQUARE_GAIN_ALERT = 0.002

register_metric(
    "square_gain",
    higher_is_better=False,
    proportion=True,
    description="fraction of images only Square (black-box) broke: > 0.002 suggests gradient masking",
)
register_metric(
    "randomized_forward",
    higher_is_better=False,
    proportion=False,
    description="1 when two forward passes of the same images differ (use autoattack version=rand)",
)

AttackName = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]


def default_eps(norm: str, size: tuple[int, int]) -> str:
    """RobustBench's budgets: CIFAR (<= 64 px) L-inf 8/255, L2 0.5, L1 12; ImageNet L-inf 4/255."""
    small = max(size) <= 64
    table = {"linf": "8/255" if small else "4/255", "l2": "0.5" if small else "", "l1": "12" if small else ""}
    if not table[norm]:
        raise ConfigError(f"autoattack norm={norm} has no standard budget at {size[0]} px: pass eps=...")
    return table[norm]


@register_suite("autoattack")
@dataclass(frozen=True)
class AutoAttackSuite(Suite):
    """AutoAttack robust accuracy, per stage and final, with AutoAttack's gradient-masking checks.

    Parameters:
        version: ``standard`` (APGD-CE, APGD-T, FAB-T, Square), ``plus``, ``rand`` (EOT for randomised
            models) or ``custom`` with ``attacks``.
        attacks: the stages of ``custom`` (apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t).
        norm: ``linf``, ``l2`` or ``l1``; eps in [0, 1] pixel space (``auto``: RobustBench's budget).
        n_restarts: 0 keeps the version's restarts; otherwise APGD/FAB/Square restarts.
        square_queries: 0 keeps the version's 5000 Square queries; fewer for quick looks (not the
            standard evaluation: the rows record it).
        n_iter: 0 keeps the version's 100 APGD / FAB iterations; fewer for quick looks (recorded).
    """

    paper: ClassVar[str] = (
        "Croce & Hein 2020, Reliable evaluation of adversarial robustness with an ensemble of diverse "
        "parameter-free attacks (AutoAttack)"
    )
    needs_grad: ClassVar[bool] = True
    splits_batches: ClassVar[bool] = True  # one long condition: shards (Ray, --devices) share its batches
    headline: ClassVar[tuple[tuple[str, str], ...]] = tuple(
        (f"*/{v}", m)
        for v in ("standard", "plus", "rand", "custom", "*-reduced", "*-modified")  # reduced: own columns
        for m in ("robust_accuracy", "clean_accuracy")
    )

    aa_version: Literal["standard", "plus", "rand", "custom"] = "standard"
    attacks: tuple[AttackName, ...] = ()
    norm: AANorm = "linf"
    eps: str = "auto"
    n_restarts: Annotated[int, NON_NEGATIVE] = 0
    square_queries: Annotated[int, NON_NEGATIVE] = 0
    n_iter: Annotated[int, NON_NEGATIVE] = 0

    def libraries(self) -> tuple[str, ...]:
        return ("pyautoattack",)  # the authors' attacks run as the package implements them

    def __post_init__(self) -> None:
        stages_of(self.aa_version, self.attacks)
        if self.eps != "auto":
            object.__setattr__(self, "eps", eps_label(self.eps))  # one spelling per budget: 4/255.0 is 4/255
            e = parse_eps(self.eps)
            if e <= 0 or (self.norm == "linf" and e > 1):
                raise ConfigError(
                    f"autoattack eps={self.eps!r} must be > 0 (and <= 1 for L-inf, [0, 1] pixels)"
                )
        if min(self.n_restarts, self.square_queries, self.n_iter) < 0:
            raise ConfigError("n_restarts, square_queries and n_iter must be >= 0")

    def conditions(self, ctx: EvalContext) -> list[Condition]:
        e = (
            self.eps
            if self.eps != "auto"
            else eps_label(default_eps(self.norm, ctx.model.data_config.image_size))
        )
        params = {
            "norm": self.norm,
            "eps": parse_eps(e),
            "eps_str": e,
            "version": self.aa_version,
            "attacks": list(stages_of(self.aa_version, self.attacks)),
            "n_restarts": self.n_restarts,
            "square_queries": self.square_queries or 5000,
            "n_iter": self.n_iter or 100,
            # APGD's step-size checkpoints follow n_iter (22% / 6% / 3%), as APGD sets them for its own
            "apgd_checkpoints": "scaled to n_iter",
        }
        params["label"] = self.label
        return [Condition(f"{self.norm}/eps={e}/{self.label}", parse_eps(e), params)]

    @property
    def label(self) -> str:
        """The version as it ran: ``standard`` only with the version's own budget; a run with fewer
        iterations or queries is ``<version>-reduced``, one with other restarts ``<version>-modified``, so a
        quick look is never ranked beside a standard evaluation."""
        if not (self.n_iter or self.square_queries or self.n_restarts) or self.aa_version == "custom":
            return self.aa_version
        cheaper = 0 < self.n_iter < 100 or 0 < self.square_queries < 5000
        return f"{self.aa_version}-{'reduced' if cheaper else 'modified'}"

    # --- the batch loop: attacks stored per batch, every stage's predictions as variants ----------
    def _stage_conditions(self, cond: Condition) -> list[Condition]:
        return [
            Condition(f"{cond.name}/after={a}", cond.severity, {**cond.params, "stage": a, "stage_index": s})
            for s, a in enumerate(cond.params["attacks"])
        ]

    def _store(self, ctx: EvalContext, cond: Condition, bs: int) -> FilledArray:
        """Per dataset image: (clean pred, first stage that broke it, its adversarial pred)."""
        digest = derived_key(
            model=loaded_model_identity(ctx.model),
            images=ctx.identity,
            labels=hashlib.sha256(np.ascontiguousarray(ctx.labels, dtype=np.int64).tobytes()).hexdigest(),
            params=cond.params,
            seed=ctx.seed,
            batch_size=bs,  # AutoAttack's random starts are drawn per batch
            libraries=library_versions(self.libraries()),  # another AutoAttack package: other outcomes
            suite_version=self.code_key(),  # a fix of rbvit's side of the attack (bumped, edited) attacks again
        )
        return FilledArray(ctx.workdir / f"autoattack-{digest}", (len(ctx.dataset), 3), np.int64)

    def prefill(self, ctx: EvalContext, cond: Condition, shard: tuple[int, int]) -> None:
        """Attack batches ``k, k + n, ...`` (the same batches as an unsharded run: same size, same
        images, so the same random starts) and store their outcomes for the final pass."""
        bs = max(1, ctx.batch_size // len(self.variants(cond)))  # the batch size run_condition starts with
        chunks = [ctx.indices[i : i + bs] for i in range(0, len(ctx.indices), bs)]
        mine = chunks[shard[0] :: shard[1]]
        if not mine:
            return
        try:
            self._run(dataclasses.replace(ctx, indices=np.concatenate(mine)), cond, bs)
        except torch.OutOfMemoryError:
            # the outcomes stored so far stay; a shard cannot halve its batch on its own (the batch
            # size keys the random starts), so the final pass attacks what is missing as a single
            # run does: at this size, halving it for every batch if it runs out of memory too
            torch.cuda.empty_cache()  # as run_condition does after an out-of-memory error
            log.warning(
                "%s shard %d/%d: out of GPU memory at batch size %d; the final pass attacks its batches",
                self.name,
                shard[0],
                shard[1],
                bs,
            )

    def _run(
        self, ctx: EvalContext, cond: Condition, bs: int
    ) -> list[tuple[Condition, ClassificationAccumulator]]:
        stages = tuple(cond.params["attacks"])
        store = self._store(ctx, cond, bs)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.logits(ctx, x)

        aa = make_autoattack(
            forward,
            norm=self.norm,
            eps=cond.params["eps"],
            version=self.aa_version,
            attacks=tuple(self.attacks),
            seed=ctx.seed,
            device=ctx.device,
            n_restarts=self.n_restarts or None,
            n_iter=cond.params["n_iter"],
            square_queries=cond.params["square_queries"],
        )
        clean = ClassificationAccumulator()
        per_stage = [ClassificationAccumulator() for _ in stages]
        randomized = 0.0
        for k, (x, y, idx) in enumerate(ctx.batches(bs)):
            with torch.no_grad():
                logits = self.logits(ctx, x)
                if k == 0 and not torch.allclose(logits, self.logits(ctx, x), rtol=1e-4, atol=1e-4):
                    randomized = 1.0
            clean.update(logits, y, idx)
            ix_np = idx.numpy()

            def compute(
                ix: np.ndarray, x: torch.Tensor = x, y: torch.Tensor = y, ix_np: np.ndarray = ix_np
            ) -> np.ndarray:
                pos = torch.from_numpy(np.searchsorted(ix_np, ix)).to(x.device)
                out = run_stages(aa, forward, x[pos], y[pos], stages)
                return torch.stack(out, 1).cpu().numpy()

            store.fill(ix_np, compute, chunk=len(ix_np), exclusive=False)  # shards attack in parallel
            rows = torch.from_numpy(store.rows(ix_np)).to(y.device)
            clean_pred, broken_at, adv_pred = rows[:, 0], rows[:, 1], rows[:, 2]
            for s, acc in enumerate(per_stage):
                broken = (broken_at >= 0) & (broken_at <= s)
                acc.update_predictions(torch.where(broken, adv_pred, clean_pred), y, idx)
            if ctx.on_batch:
                ctx.on_batch(len(idx))
        if randomized:
            log.warning(
                "%s: the model's forward is randomised (two passes differ); AutoAttack's standard version "
                "assumes a deterministic model: use -p aa_version=rand",
                cond.name,
            )
        final = Condition(cond.name, cond.severity, {**cond.params, "randomized_forward": randomized})
        return [
            (Condition(f"{cond.name}/clean", 0.0, {**cond.params, "variant": "clean"}), clean),
            *zip(self._stage_conditions(cond), per_stage),
            (final, per_stage[-1]),
        ]

    def condition_metrics(self, results: list[tuple[Condition, ClassificationAccumulator]]) -> list[Result]:
        (_, clean), *stages, (final, adv) = results
        out = adversarial_metrics(final, clean, adv)
        n = clean.n
        accs = [float(a.correct().mean()) if n else float("nan") for _, a in stages]
        out += [(c, MetricValue("robust_accuracy", acc, n)) for (c, _), acc in zip(stages, accs)]
        names = final.params["attacks"]
        gain = 0.0
        if "square" in names:
            s = names.index("square")
            before = accs[s - 1] if s > 0 else float(clean.correct().mean())
            gain = max(0.0, before - accs[s])
            if gain > SQUARE_GAIN_ALERT:
                log.warning(
                    "%s: Square (black-box) lowered robust accuracy by %.2f%% after the gradient attacks: the "
                    "gradients may be masked; the AutoAttack number may overestimate robustness (see "
                    "AutoAttack's checks: try an adaptive attack)",
                    final.name,
                    100 * gain,
                )
        out.append((final, MetricValue("square_gain", gain, n)))
        out.append((final, MetricValue("randomized_forward", float(final.params["randomized_forward"]), n)))
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "stages": list(stages_of(self.aa_version, self.attacks))}
