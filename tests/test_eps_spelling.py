"""One budget is one condition however it is written: ``4/255.0``, ``8/510`` and ``0.01568627450980392``
named three conditions (three board columns, three runs of one attack that `compare` would not pair);
``-p epsilons=4/255,4/255.0`` attacked twice. Every attack suite names a budget by one spelling."""

from __future__ import annotations

import json

import pytest

from robustbench_vit.attacks import eps_label, parse_eps
from robustbench_vit.errors import ConfigError
from tests.helpers import CIFAR10_TEST, needs_cifar, rbvit_cli


@pytest.mark.parametrize(
    "written,label",
    [
        ("4/255", "4/255"),
        ("4/255.0", "4/255"),
        ("8/510", "4/255"),
        ("0.01568627450980392", "4/255"),
        (4 / 255, "4/255"),
        ("0.5/255", "0.5/255"),
        ("1/510", "0.5/255"),
        ("0.5", "0.5"),  # L2 budgets stay decimals: 127.5/255 is longer
        ("3.0", "3.0"),
        ("3", "3.0"),
        ("0.03", "0.03"),
        ("0.031", "0.031"),  # 7.905/255: three decimals, not a /255 budget
        ("1e-400", "0"),
        ("-0", "0"),
    ],
)
def test_one_spelling_per_budget(written, label):
    assert eps_label(written) == label
    assert parse_eps(label) == pytest.approx(parse_eps(written), rel=1e-12, abs=0)  # the same number


def test_labels_of_distinct_budgets_stay_distinct():
    budgets = [k / 100 / 255 for k in range(1, 2000)] + [k / 1000 for k in range(1, 3000)]
    labels = {eps_label(e): e for e in budgets}
    assert all(parse_eps(lab) == pytest.approx(e, rel=1e-9) for lab, e in labels.items())
    assert len({float(f"{e:.10g}") for e in budgets}) == len(labels)
    assert eps_label(2.55 / 255) == eps_label(0.01) == "0.01"  # one rounding apart: one budget


def test_every_attack_suite_stores_the_one_spelling():
    from robustbench_vit.suites import make_suite
    from robustbench_vit.suites.autoattack import AutoAttackSuite
    from robustbench_vit.suites.pgd import PGDSuite

    assert make_suite("pgd", {"epsilons": "8/510,0.5/255"}).epsilons == ("4/255", "0.5/255")
    assert PGDSuite(epsilons=("0.01568627450980392",)).epsilons == ("4/255",)  # built in Python
    assert make_suite("autoattack", {"eps": "8/510"}).eps == "4/255"
    assert AutoAttackSuite(eps="4/255.0").eps == "4/255"
    assert make_suite("transfer", {"source": "test_vit", "eps": "32/510"}).eps == "16/255"
    with pytest.raises(ConfigError, match="lists the budget 4/255 twice"):
        make_suite("pgd", {"epsilons": "4/255,4/255.0"})


@needs_cifar
def test_a_budget_spelt_otherwise_resumes_the_same_condition(tmp_path, cifar_card):
    """Through the CLI: PGD at ``8/510`` is the run of ``4/255`` (resumed, nothing computed); listing both is
    one line (exit 2)."""
    base = ["eval", "-m", str(cifar_card), "-s", "pgd", "--data", str(CIFAR10_TEST), "--limit", "4"]
    base += ["-p", "steps=1", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--json"]
    first = rbvit_cli(*base, "-p", "epsilons=4/255")
    assert first.returncode == 0, first.stderr
    again = rbvit_cli(*base, "-p", "epsilons=8/510")
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert {r["condition"] for r in rows} == {"linf/eps=4/255"}
    assert "1 condition reused" in again.stderr and "0 computed" in again.stderr
    assert rows == [json.loads(line) for line in first.stdout.splitlines()]
    both = rbvit_cli(*base, "-p", "epsilons=4/255,4/255.0")
    assert both.returncode == 2 and "lists the budget 4/255 twice" in both.stderr
