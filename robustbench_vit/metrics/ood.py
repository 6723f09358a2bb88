"""Out-of-distribution detection scores: AUROC, AUPR (average precision) and FPR at 95% TPR.

The anomalies (out-of-distribution images) are the positive class and the anomaly score is higher for
more anomalous images (ImageNet-O: the negative maximum softmax probability), as in the evaluation
code of Hendrycks et al. 2021 ("Natural Adversarial Examples"). AUROC and AUPR are scikit-learn's
``roc_auc_score`` and ``average_precision_score``, the calls that code makes; the FPR at a recall
level restates its ``fpr_and_fdr_at_recall``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "aupr", "fpr_at_recall"]


def _checked(is_ood: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    y = np.asarray(is_ood, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError("is_ood and score differ in length")
    return (y, s) if y.any() and (~y).any() else None


def auroc(is_ood: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve, anomalies positive; NaN unless both classes are present."""
    from sklearn.metrics import roc_auc_score

    ys = _checked(is_ood, score)
    return float("nan") if ys is None else float(roc_auc_score(*ys))


def aupr(is_ood: np.ndarray, score: np.ndarray) -> float:
    """Average precision with the anomalies as positives (the paper's AUPR); NaN unless both classes."""
    from sklearn.metrics import average_precision_score

    ys = _checked(is_ood, score)
    return float("nan") if ys is None else float(average_precision_score(*ys))


def fpr_at_recall(is_ood: np.ndarray, score: np.ndarray, recall_level: float = 0.95) -> float:
    """False-positive rate at the distinct-score threshold whose recall of the anomalies is closest to
    ``recall_level``, among the thresholds up to the first that reaches full recall (the reference's rule)."""
    ys = _checked(is_ood, score)
    if ys is None:
        return float("nan")
    y, s = ys
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_run].astype(np.float64)
    fp = (last_of_run + 1) - tp
    full = int(np.searchsorted(tp, tp[-1]))
    recall = np.r_[tp[full::-1] / tp[-1], 0.0]
    fps = np.r_[fp[full::-1], 0.0]
    cut = int(np.argmin(np.abs(recall - recall_level)))
    return float(fps[cut] / np.sum(~y))
