"""Calibration under shift: Brier, RMS calibration error and AURRA against the references' definitions,
calibration rows on every classification suite's conditions, and a real model under corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robustbench_vit as rbvit
from robustbench_vit.metrics.accumulators import ClassificationAccumulator, aurra, rms_calibration_error
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_effnet, needs_imagenet


def _reference_calib_err(confidence: np.ndarray, correct: np.ndarray, beta: int = 100) -> float:
    """natural-adv-examples ``calib_err(p='2')``, restated: adaptive bins of ``beta``; the loop runs over
    all bins but the last."""
    idxs = np.argsort(confidence)
    confidence, correct = confidence[idxs], correct[idxs]
    bins = [[i * beta, (i + 1) * beta] for i in range(len(confidence) // beta)]
    bins[-1] = [bins[-1][0], len(confidence)]
    cerr = 0.0
    for i in range(len(bins) - 1):
        c, k = confidence[bins[i][0] : bins[i][1]], correct[bins[i][0] : bins[i][1]]
        cerr += len(c) / len(confidence) * (np.nanmean(c) - np.nanmean(k)) ** 2
    return float(np.sqrt(cerr))


def _reference_aurra(confidence: np.ndarray, correct: np.ndarray) -> float:
    ranks = np.argsort(confidence)[::-1]
    curve = np.cumsum(np.asarray(correct)[ranks]) / np.arange(1, len(ranks) + 1)
    return float(np.mean(curve))


@pytest.mark.parametrize("n", [200, 1000, 1234, 7000])
def test_rms_calibration_error_and_aurra_match_the_reference(n):
    rng = np.random.default_rng(n)
    conf = rng.uniform(0.05, 1.0, n)
    correct = (rng.random(n) < conf**1.5).astype(float)
    assert rms_calibration_error(conf, correct) == pytest.approx(_reference_calib_err(conf, correct))
    assert aurra(conf, correct) == pytest.approx(_reference_aurra(conf, correct))


def test_rms_calibration_error_needs_two_bins_and_is_zero_when_calibrated():
    assert np.isnan(rms_calibration_error(np.full(150, 0.5), np.ones(150)))
    conf = np.repeat([0.5, 0.8, 1.0], 100)
    correct = np.r_[np.tile([1, 0], 50), np.tile([1, 1, 1, 1, 0], 20), np.ones(100)]
    assert rms_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_brier_is_the_squared_distance_to_the_one_hot_label():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(64, 10, generator=g) * 3, torch.randint(0, 10, (64,), generator=g)
    acc = ClassificationAccumulator()
    acc.update(logits[:30], labels[:30], torch.arange(30))
    acc.update(logits[30:], labels[30:], torch.arange(30, 64))
    p = logits.softmax(1).numpy()
    onehot = np.eye(10)[labels.numpy()]
    (brier,) = acc.results(("brier",))
    assert brier.value == pytest.approx(((p - onehot) ** 2).sum(1).mean(), rel=1e-5)
    # a confident right answer scores ~0, a confident wrong one ~2
    sure = ClassificationAccumulator()
    sure.update(torch.tensor([[20.0, 0, 0], [0, 20.0, 0]]), torch.tensor([0, 0]), torch.arange(2))
    assert sure.results(("brier",))[0].value == pytest.approx(1.0, abs=1e-6)


@needs_cifar
def test_every_classification_condition_reports_calibration(cifar_card, tmp_path):
    df = rbvit.evaluate(
        str(cifar_card),
        ["occlusion", "corruptions"],
        data=str(CIFAR10_TEST),
        limit=64,
        batch_size=64,
        progress=False,
        suite_params={"fractions": "0.5", "modes": "random", "corruptions": "contrast", "severities": "1"},
    )
    cells = df[~df.condition.str.startswith("summary")]
    for (suite, cond), g in cells.groupby(["suite", "condition"]):
        assert {"nll", "ece", "brier"} <= set(g.metric), (suite, cond)
    summary = df[(df.suite == "corruptions") & (df.metric == "ece_mean")]
    assert len(summary) == 1
    ece = cells[(cells.suite == "corruptions") & (cells.metric == "ece") & (cells.condition != "clean")]
    assert summary.value.iloc[0] == pytest.approx(ece.value.mean())


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_a_real_model_is_less_calibrated_under_corruption(tmp_path):
    """efficientnet-lite0 on 100 shared ImageNet images: NLL and Brier grow under severe noise. (ECE need not:
    this model is under-confident on clean images, and noise lowers its confidence with its accuracy.)"""
    df = rbvit.evaluate(
        "efficientnet_lite0",
        ["clean", "corruptions"],
        data=str(IMAGENET_SAMPLES),
        limit=100,
        batch_size=50,
        progress=False,
        suite_params={"corruptions": "gaussian_noise", "severities": "5"},
    )
    v = df[~df.condition.str.startswith("summary")].pivot_table(
        index="suite", columns="metric", values="value"
    )
    clean, noisy = v.loc["clean"], v.loc["corruptions"]
    assert clean.top1 > 0.6 and noisy.top1 < clean.top1 - 0.2
    for m in ("nll", "brier"):
        assert noisy[m] > clean[m], m
    assert 0 < clean.ece < 0.3 and 0 < noisy.ece < 0.5 and 0 < clean.brier < noisy.brier < 2.0


@needs_imagenet
def test_imagenet_a_reports_the_natural_adversarial_calibration_metrics(tmp_path):
    from tests.test_imagenet_ar import _ar_fixture

    root = _ar_fixture(tmp_path / "imagenet-a", "imagenet-a")
    df = rbvit.evaluate(
        "timm:test_resnet", "imagenet_a", data=str(root), pretrained=False, batch_size=100, progress=False
    )
    v = df.set_index("metric").value
    assert {"rms_calibration_error", "aurra", "ece", "nll", "brier"} <= set(v.index)
    assert 0 <= v["rms_calibration_error"] <= 1 and 0 <= v["aurra"] <= 1  # 200 images: one counted bin
