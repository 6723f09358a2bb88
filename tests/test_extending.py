"""README's "Extending rbvit" recipes work as written: a suite in one class, a metric in one registration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pytest
import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.metrics.accumulators import METRICS, register_metric
from robustbench_vit.suites import SUITES, Condition, Suite, make_suite, register_suite
from tests.helpers import CIFAR10_TEST, needs_cifar


def _register_example() -> None:
    if "grayscale_example" in SUITES:
        return

    register_metric(
        "mean_confidence_example",
        higher_is_better=True,
        proportion=False,
        description="mean top-1 softmax probability",
        compute=lambda acc: float(acc._cat("conf").mean()),
    )

    @register_suite("grayscale_example")
    @dataclass(frozen=True)
    class Grayscale(Suite):
        """Accuracy on desaturated images."""

        paper: ClassVar[str] = "README example"
        metrics: ClassVar[tuple[str, ...]] = ("top1", "mean_confidence_example")
        amounts: tuple[float, ...] = (0.5, 1.0)
        mode: Literal["luma", "mean"] = "luma"

        def conditions(self, ctx):  # type: ignore[no-untyped-def]
            return [Condition(f"amount={a}", a, {"amount": a, "mode": self.mode}) for a in self.amounts]

        def perturb(self, x, y, idx, cond, ctx, generator):  # type: ignore[no-untyped-def]
            g = x.mean(1, keepdim=True)
            return torch.lerp(x, g.expand_as(x), cond.params["amount"])


@needs_cifar
def test_a_new_suite_and_metric_run_end_to_end(tmp_path, cifar_card):
    import robustbench_vit as rbvit
    from robustbench_vit.results.leaderboard import build_leaderboard

    _register_example()
    df = rbvit.evaluate(
        str(cifar_card),
        "grayscale_example",
        data=str(CIFAR10_TEST),
        limit=20,
        out=str(tmp_path),
        suite_params={"amounts": "0,1", "mode": "mean"},
    )
    assert set(df.condition) == {"amount=0.0", "amount=1.0"}
    # every classification suite also reports the calibration metrics (``calibration = ()`` opts out)
    assert set(df.metric) == {"top1", "mean_confidence_example", "nll", "ece", "brier"}
    assert df[df.metric.isin(["top1", "mean_confidence_example"])]["higher_is_better"].all()
    board = build_leaderboard(tmp_path)
    conf = board[board.metric == "mean_confidence_example"]
    assert len(conf) == 2 and conf["ci_low"].isna().all()  # not a proportion: no Wilson interval
    assert METRICS.get("mean_confidence_example").higher_is_better


def test_new_suite_parameters_are_validated_from_their_types():
    _register_example()
    with pytest.raises(ConfigError, match="one of: luma, mean"):
        make_suite("grayscale_example", {"mode": "hsv"})
    with pytest.raises(ConfigError, match="did you mean 'amounts'"):
        make_suite("grayscale_example", {"amount": "1"})


@needs_cifar
def test_a_suite_defined_outside_rbvit_is_keyed_by_its_code(tmp_path, cifar_card, monkeypatch):
    """No test bumps the version of a suite (or a metric) registered in a notebook: its ``perturb`` edited
    between two runs resumed the first code's numbers. Such a suite is keyed by the code it runs, and the
    ``compute`` of such a metric it reports, in memory: an edit recomputes, the same code resumes. rbvit's
    own suites and metrics stay keyed by their versions."""
    import robustbench_vit as rbvit

    _register_example()
    cls = SUITES.get("grayscale_example")
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    kw |= dict(suite_params={"amounts": "1"}, progress=False)
    first = rbvit.evaluate(str(cifar_card), "grayscale_example", **kw)
    assert rbvit.evaluate(str(cifar_card), "grayscale_example", **kw).attrs["conditions_computed"] == 0

    def perturb(self, x, y, idx, cond, ctx, generator):  # type: ignore[no-untyped-def]
        return 1.0 - x  # another perturbation under the same name and version

    monkeypatch.setattr(cls, "perturb", perturb)
    edited = rbvit.evaluate(str(cifar_card), "grayscale_example", **kw)
    assert edited.attrs["conditions_computed"] == 1
    assert set(edited.run_id).isdisjoint(first.run_id)
    # a metric registered outside rbvit: its ``compute`` edited is another run too
    import dataclasses

    spec = METRICS.get("mean_confidence_example")
    median = dataclasses.replace(spec, compute=lambda acc: float(np.median(acc._cat("conf"))))
    monkeypatch.setitem(METRICS._items, "mean_confidence_example", median)
    metric = rbvit.evaluate(str(cifar_card), "grayscale_example", **kw)
    assert metric.attrs["conditions_computed"] == 1 and set(metric.run_id).isdisjoint(edited.run_id)
    assert (
        "code" not in make_suite("clean").identity() and "metric_code" not in make_suite("clean").identity()
    )
