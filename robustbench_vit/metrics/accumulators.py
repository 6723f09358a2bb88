"""Streaming metric accumulators and the metric catalogue (direction of every metric).

Accumulators keep per-example flags (prediction, correctness, loss) so robust accuracy over
several attacks can be taken per image, transfer can be analysed, and ``--save-samples`` can
write per-sample rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_vit.registry import Registry

__all__ = [
    "MetricSpec",
    "METRICS",
    "register_metric",
    "HIGHER_IS_BETTER",
    "PROPORTIONS",
    "MetricValue",
    "ClassificationAccumulator",
    "PrecomputedResults",
    "expected_calibration_error",
    "rms_calibration_error",
    "aurra",
    "CALIBRATION_METRICS",
]


@dataclass(frozen=True)
class MetricSpec:
    """Everything the harness knows about a metric, registered once.

    Attributes:
        name: the ``metric`` column value.
        higher_is_better: ranking direction (leaderboard, summaries, plots).
        proportion: a fraction of images in [0, 1] (gets a Wilson interval on the leaderboard).
        description: one line for ``rbvit ls`` and the README.
        compute: how an accumulator yields it (``None``: computed by a suite's own formula).
    """

    name: str
    higher_is_better: bool
    proportion: bool
    description: str
    compute: Callable[[ClassificationAccumulator], float] | None = None


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    proportion: bool,
    description: str,
    compute: Callable[[ClassificationAccumulator], float] | None = None,
) -> MetricSpec:
    """Add a metric to the catalogue; a suite may emit only registered metrics."""
    spec = MetricSpec(name, higher_is_better, proportion, description, compute)
    METRICS.add(name, spec)
    return spec


def _mean_or_nan(a: np.ndarray) -> float:
    return float(a.mean()) if len(a) else float("nan")


# accumulator metrics: computed from the per-image flags of one condition
register_metric(
    "top1",
    higher_is_better=True,
    proportion=True,
    description="top-1 accuracy",
    compute=lambda acc: _mean_or_nan(acc.correct()),
)
register_metric(
    "error",
    higher_is_better=False,
    proportion=True,
    description="top-1 error (1 - top1)",
    compute=lambda acc: 1.0 - _mean_or_nan(acc.correct()),
)
register_metric(
    "top5",
    higher_is_better=True,
    proportion=True,
    description="top-5 accuracy",
    compute=lambda acc: _mean_or_nan(acc._cat("top5")),
)
register_metric(
    "nll",
    higher_is_better=False,
    proportion=False,
    description="mean negative log-likelihood",
    compute=lambda acc: _mean_or_nan(acc._cat("loss")),
)
register_metric(
    "ece",
    higher_is_better=False,
    proportion=False,
    description="expected calibration error, 15 bins",
    compute=lambda acc: expected_calibration_error(acc._cat("conf"), acc.correct()),
)
register_metric(
    "brier",
    higher_is_better=False,
    proportion=False,
    description="Brier score: mean squared distance of the softmax to the one-hot label (summed over classes)",
    compute=lambda acc: _mean_or_nan(acc._cat("brier")),
)
register_metric(
    "rms_calibration_error",
    higher_is_better=False,
    proportion=False,
    description="RMS calibration error, adaptive bins of 100 images (Hendrycks et al., natural adversarial examples)",
    compute=lambda acc: rms_calibration_error(acc._cat("conf"), acc.correct()),
)
register_metric(
    "aurra",
    higher_is_better=True,
    proportion=False,
    description="area under the response rate-accuracy curve (Hendrycks et al., natural adversarial examples)",
    compute=lambda acc: aurra(acc._cat("conf"), acc.correct()),
)

#: calibration metrics every classification suite reports for each condition (issue: calibration under shift)
CALIBRATION_METRICS: tuple[str, ...] = ("nll", "ece", "brier")

# suite formulas
for _name, _hib, _prop, _desc in (
    ("top1_mean", True, True, "mean top-1 over repeats"),
    ("top1_std", False, False, "standard deviation of top-1 over repeats (only with >= 2 repeats)"),
    ("auc", True, False, "normalised area under an accuracy curve"),
    ("robust_accuracy", True, True, "accuracy on adversarial examples (all evaluated images)"),
    ("clean_accuracy", True, True, "accuracy on the clean images of the same condition"),
    ("attack_success_rate", False, True, "fraction of clean-correct images the attack fools"),
    ("fooling_rate", False, True, "target prediction changed, over the condition's population"),
    ("fooling_rate_all", False, True, "target prediction changed, over every image"),
    ("source_clean_accuracy", True, True, "source model accuracy on the clean images"),
    ("target_accuracy", True, True, "target accuracy on the adversarial images"),
    ("top1_diff", True, False, "top-1 on the shifted set minus top-1 on its clean counterpart"),
    ("ce", False, False, "corruption error normalised by AlexNet (Hendrycks & Dietterich)"),
    ("ce_unnormalised", False, True, "mean error over the severities run"),
    ("mce", False, False, "mean corruption error normalised by AlexNet"),
    ("relative_mce", False, False, "relative mCE (AlexNet-normalised)"),
    ("mean_corruption_accuracy", True, True, "mean accuracy over corruption cells"),
    ("logit_change", False, False, "mean change of the true-class logit"),
    ("error_mean", False, False, "mean error over a Fourier map"),
    ("error_low_freq", False, False, "mean error over the low-frequency half of a Fourier map"),
    ("error_high_freq", False, False, "mean error over the high-frequency half of a Fourier map"),
    ("ece_mean", False, False, "mean expected calibration error over corruption cells"),
):
    register_metric(_name, higher_is_better=_hib, proportion=_prop, description=_desc)

#: derived views kept for callers: direction and proportion of every registered metric
HIGHER_IS_BETTER: dict[str, bool] = {n: m.higher_is_better for n, m in METRICS.items()}
PROPORTIONS: frozenset[str] = frozenset(n for n, m in METRICS.items() if m.proportion)


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float
    n: int

    @property
    def spec(self) -> MetricSpec:
        return METRICS.get(self.metric)

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): sum_b |acc_b - conf_b| * n_b / n."""
    if len(conf) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += abs(correct[m].mean() - conf[m].mean()) * m.sum()
    return float(ece / len(conf))


def rms_calibration_error(conf: np.ndarray, correct: np.ndarray, bin_size: int = 100) -> float:
    """RMS calibration error as the natural-adversarial-examples reference computes it (``calib_err``, p=2).

    Images are sorted by confidence and cut into bins of ``bin_size`` (the last bin also takes the
    remainder); the reference's loop then stops before that last bin, so it is not counted, and we
    keep that for comparability. Each counted bin adds ``n_b / n * (mean conf - accuracy)^2``; the
    result is the square root. NaN with fewer than two bins (under ``2 * bin_size`` images).
    """
    n = len(conf)
    if n // bin_size < 2:
        return float("nan")
    order = np.argsort(conf, kind="stable")
    c, k = np.asarray(conf, dtype=np.float64)[order], np.asarray(correct, dtype=np.float64)[order]
    starts = np.arange(0, (n // bin_size - 1) * bin_size, bin_size)  # every bin but the last
    total = 0.0
    for s in starts:
        gap = c[s : s + bin_size].mean() - k[s : s + bin_size].mean()
        total += bin_size / n * gap * gap
    return float(np.sqrt(total))


def aurra(conf: np.ndarray, correct: np.ndarray) -> float:
    """Area under the response rate-accuracy curve: answer the most confident images first; the mean over
    response rates of the accuracy on the answered images."""
    if len(conf) == 0:
        return float("nan")
    order = np.argsort(-np.asarray(conf, dtype=np.float64), kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    return float(np.mean(hits / np.arange(1, len(hits) + 1)))


#: the statistics kept on the device per batch, in their stacked order, with their host dtypes
_DEVICE_COLUMNS = {
    "label": np.int64,
    "pred": np.int64,
    "top5": bool,
    "loss": np.float32,
    "conf": np.float32,
    "brier": np.float32,
}


class ClassificationAccumulator:
    """Top-1/top-5/NLL/ECE/Brier over a stream of (logits, labels, dataset indices).

    A batch's statistics stay on the model's device until they are read: copying them out per batch
    would make the host wait for the device after every batch, leaving it idle while the next batch is
    prepared. All values round-trip exactly (integers and float32 through float64).
    """

    def __init__(self) -> None:
        self._columns: dict[str, list[np.ndarray]] = {c: [] for c in ("index", *_DEVICE_COLUMNS)}
        self._pending: list[torch.Tensor] = []  # (B, 6) float64 per batch, on the device

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        logits = logits.float()
        labels = labels.to(logits.device)
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        probs = logits.softmax(1)
        p_true = probs.gather(1, labels[:, None]).squeeze(1)
        stats = (
            labels,
            topk[:, 0],
            (topk == labels[:, None]).any(1),
            F.cross_entropy(logits, labels, reduction="none"),
            probs.max(1).values,
            (probs * probs).sum(1) - 2 * p_true + 1,
        )
        self._pending.append(torch.stack([s.double() for s in stats], 1))
        self._columns["index"].append(indices.cpu().numpy())

    def _flush(self) -> None:
        """Copy the statistics still on the device to the host (one transfer)."""
        if not self._pending:
            return
        block = torch.cat(self._pending).cpu().numpy()
        self._pending.clear()
        for j, (name, dtype) in enumerate(_DEVICE_COLUMNS.items()):
            self._columns[name].append(block[:, j].astype(dtype))

    @torch.no_grad()
    def update_predictions(self, pred: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        """Predictions without logits (e.g. AutoAttack's stored outcomes): top-1 is exact; top-5 counts
        the top-1 hit, loss and confidence are NaN (so no NLL/ECE is reported from these)."""
        self._flush()  # keep the batches in order
        pred, labels = pred.cpu().numpy(), labels.cpu().numpy()
        nan = np.full(len(pred), np.nan, dtype=np.float32)
        c = self._columns
        c["index"].append(indices.cpu().numpy())
        c["label"].append(labels)
        c["pred"].append(pred)
        c["top5"].append(pred == labels)
        for name in ("loss", "conf", "brier"):
            c[name].append(nan)

    def _cat(self, name: str) -> np.ndarray:
        if name != "index":
            self._flush()
        parts = self._columns[name]
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def n(self) -> int:
        return int(sum(len(p) for p in self._columns["index"]))

    def correct(self) -> np.ndarray:
        return self._cat("pred") == self._cat("label")

    def results(self, metrics: tuple[str, ...] = ("top1",)) -> list[MetricValue]:
        """The registered accumulator metrics ``metrics`` of this stream."""
        out = []
        for m in metrics:
            spec = METRICS.get(m)
            if spec.compute is None:
                raise ValueError(f"metric {m!r} is not computed from an accumulator")
            out.append(MetricValue(m, spec.compute(self), self.n))
        return out

    def samples(self) -> dict[str, np.ndarray]:
        """Per-example columns: index, label, pred, correct, loss."""
        return {
            "index": self._cat("index").astype(np.int64),
            "label": self._cat("label").astype(np.int64),
            "pred": self._cat("pred").astype(np.int64),
            "correct": self.correct(),
            "loss": self._cat("loss").astype(np.float32),
        }


class PrecomputedResults(ClassificationAccumulator):
    """The finished results of a pass that is not per-image classification (CKA, sequence stability):
    ``values`` are (condition, metric value) pairs; there are no per-image predictions, so no sample rows."""

    def __init__(self, values: list) -> None:
        super().__init__()
        self.values = values
