"""Streaming metric accumulators and the metric catalogue (direction of every metric).

Accumulators keep per-example flags (prediction, correctness, loss) so robust accuracy over
several attacks can be taken per image, transfer can be analysed, and ``--save-samples`` can
write per-sample rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["HIGHER_IS_BETTER", "MetricValue", "ClassificationAccumulator", "expected_calibration_error"]

#: Every metric name a suite may emit, with its direction. Unknown names are a bug (KeyError).
HIGHER_IS_BETTER: dict[str, bool] = {
    "top1": True, "top5": True, "error": False, "nll": False, "ece": False,
    "top1_mean": True, "top1_std": False, "auc": True,
    "robust_accuracy": True, "clean_accuracy": True, "attack_success_rate": False,
    "fooling_rate": False, "fooling_rate_all": False, "source_clean_accuracy": True, "target_accuracy": True, "top1_diff": True,
    "ce": False, "ce_unnormalised": False, "mce": False, "relative_mce": False, "mean_corruption_accuracy": True,
    "logit_change": False, "error_mean": False, "error_low_freq": False, "error_high_freq": False,
}  # fmt: skip


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float
    n: int

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]


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


class ClassificationAccumulator:
    """Top-1/top-5/NLL/ECE over a stream of (logits, labels, dataset indices)."""

    def __init__(self) -> None:
        self.index: list[np.ndarray] = []
        self.label: list[np.ndarray] = []
        self.pred: list[np.ndarray] = []
        self.top5: list[np.ndarray] = []
        self.loss: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        logits = logits.float()
        labels = labels.to(logits.device)
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        probs = logits.softmax(1)
        self.index.append(indices.cpu().numpy())
        self.label.append(labels.cpu().numpy())
        self.pred.append(topk[:, 0].cpu().numpy())
        self.top5.append((topk == labels[:, None]).any(1).cpu().numpy())
        self.loss.append(F.cross_entropy(logits, labels, reduction="none").cpu().numpy())
        self.conf.append(probs.max(1).values.cpu().numpy())

    def _cat(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def n(self) -> int:
        return int(sum(len(p) for p in self.index))

    def correct(self) -> np.ndarray:
        return self._cat("pred") == self._cat("label")

    def results(self, metrics: tuple[str, ...] = ("top1",)) -> list[MetricValue]:
        n = self.n
        correct = self.correct()
        table = {
            "top1": lambda: float(correct.mean()) if n else float("nan"),
            "error": lambda: 1.0 - float(correct.mean()) if n else float("nan"),
            "top5": lambda: float(self._cat("top5").mean()) if n else float("nan"),
            "nll": lambda: float(self._cat("loss").mean()) if n else float("nan"),
            "ece": lambda: expected_calibration_error(self._cat("conf"), correct),
        }
        return [MetricValue(m, table[m](), n) for m in metrics]

    def samples(self) -> dict[str, np.ndarray]:
        """Per-example columns: index, label, pred, correct, loss."""
        return {
            "index": self._cat("index").astype(np.int64),
            "label": self._cat("label").astype(np.int64),
            "pred": self._cat("pred").astype(np.int64),
            "correct": self.correct(),
            "loss": self._cat("loss").astype(np.float32),
        }
