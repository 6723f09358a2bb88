"""AutoAttack suite: stages, agreement with the authors' package called directly, gradient-masking and
randomised-forward checks, the per-image worst case (resume and shards: test_autoattack_resume.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_effnet, needs_imagenet
from tests.smooth_classifier import PRE, Smooth
from tests.smooth_classifier import first_value as _value
from tests.smooth_classifier import run_autoattack as _eval

pytest.importorskip("pyautoattack")


@needs_cifar
def test_every_stage_runs_and_robust_accuracy_never_rises(tmp_path):
    df = _eval(Smooth(), eps="2/255", square_queries=100, limit=120, batch_size=120)
    stages = df[df.condition.str.contains("/after=")].sort_values(
        "condition", key=lambda s: s.map(_stage_order)
    )
    assert list(stages.condition.str.split("after=").str[1]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = stages.value.tolist()
    clean = _value(df, "clean_accuracy")
    assert clean >= accs[0] and all(a >= b for a, b in zip(accs, accs[1:]))
    final = df[(df.metric == "robust_accuracy") & df.condition.str.endswith("/standard-reduced")].value.iat[0]
    assert final == accs[-1] and 0 < clean and accs[0] < clean  # the budget breaks some, not all
    assert _value(df, "randomized_forward") == 0.0


_ORDER = {"apgd-ce": 0, "apgd-t": 1, "fab-t": 2, "square": 3}


def _stage_order(name: str) -> int:
    return _ORDER[name.split("after=")[1]]


@needs_cifar
def test_per_image_outcome_equals_the_package_called_directly():
    """The same images through pyautoattack's own run_standard_evaluation (one batch, same seed)."""
    from pyautoattack import AutoAttack

    import robustbench_vit as rbvit
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.data.subset import stratified_limit
    from robustbench_vit.models.loading import wrap_module

    model = wrap_module(Smooth(), preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    df = rbvit.evaluate(
        model,
        "autoattack",
        data=str(CIFAR10_TEST),
        limit=200,
        batch_size=200,
        progress=False,
        suite_params={"eps": "2/255", "square_queries": 100},
        out=None,
    )
    _, ds = open_dataset(CIFAR10_TEST)
    idx = stratified_limit(ds.targets, 200, 0)
    x = torch.stack([ds.read(int(i)) for i in idx]).float() / 255
    y = torch.as_tensor(ds.targets[idx])
    aa = AutoAttack(model, norm="Linf", eps=2 / 255, version="standard", seed=0, device="cpu")
    aa.square.n_queries = 100
    aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = 10
    aa.logger.setLevel(logging.WARNING)
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=200)
    with torch.no_grad():
        theirs = (model(x_adv).argmax(1) == y).float().mean().item()
    ours = df[(df.metric == "robust_accuracy") & df.condition.str.endswith("/standard-reduced")].value.iat[0]
    assert abs(ours - theirs) * 200 <= 1, (ours, theirs)
    assert theirs < _clean(model, x, y)  # the comparison is not vacuous: the attacks broke images


def _clean(model, x, y) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@needs_cifar
def test_masked_gradients_are_flagged(caplog):
    """A quantising input layer hides the gradient: APGD finds nothing, the black-box Square does."""
    with caplog.at_level(logging.WARNING):
        df = _eval(
            Smooth(quantise=True),
            eps="8/255",
            aa_version="custom",
            attacks=("apgd-ce", "square"),
            square_queries=300,
            limit=100,
            batch_size=100,
        )
    gain = _value(df, "square_gain")
    assert gain > 0.002 and any("gradients may be masked" in r.message for r in caplog.records)
    plain = _eval(
        Smooth(),
        eps="2/255",
        aa_version="custom",
        attacks=("apgd-ce", "square"),
        square_queries=300,
        limit=100,
        batch_size=100,
    )
    assert _value(plain, "square_gain") <= 0.002


@needs_cifar
def test_a_randomised_forward_is_flagged(caplog):
    with caplog.at_level(logging.WARNING):
        df = _eval(
            Smooth(noisy=True),
            eps="1/255",
            aa_version="custom",
            attacks=("apgd-ce",),
            limit=20,
            batch_size=20,
        )
    assert _value(df, "randomized_forward") == 1.0 and any(
        "aa_version=rand" in r.message for r in caplog.records
    )


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_efficientnet_autoattack_is_below_pgd_and_equals_the_package(tmp_path):
    """Real weights, 6 shared ImageNet samples, L-inf 0.001: AutoAttack <= PGD-10 on the same images, and
    the package's own run_standard_evaluation agrees within one image (iterations and queries cut for
    CPU time on both sides alike)."""
    from pyautoattack import AutoAttack

    import robustbench_vit as rbvit
    from robustbench_vit.models.loading import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    kw = dict(data=str(IMAGENET_SAMPLES), limit=6, batch_size=6, progress=False, out=None, save_samples=True)
    quick = {"eps": "0.001", "n_iter": 10, "square_queries": 100}
    aa = rbvit.evaluate(model, "autoattack", suite_params=quick, **kw)
    pgd = rbvit.evaluate(model, "pgd", suite_params={"epsilons": ("0.001",), "steps": 10}, **kw)
    ours = aa[(aa.metric == "robust_accuracy") & aa.condition.str.endswith("/standard-reduced")].value.iat[0]
    pgd_acc = pgd[pgd.metric == "robust_accuracy"].value.iat[0]
    assert ours <= pgd_acc
    from robustbench_vit.data.cache import ImageCache, default_cache_dir
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.data.subset import stratified_limit

    _, ds = open_dataset(IMAGENET_SAMPLES)
    idx = stratified_limit(ds.targets, 6, 0)
    x = ImageCache(ds, model.data_config, default_cache_dir()).batch(idx).float() / 255
    y = torch.as_tensor([model.label_space.index_of(ds.classes[t]) for t in ds.targets[idx]])
    ref = AutoAttack(model, norm="Linf", eps=0.001, version="standard", seed=0, device="cpu")
    ref.square.n_queries = 100
    ref.apgd.n_iter = ref.apgd_targeted.n_iter = ref.fab.n_iter = 10
    ref.logger.setLevel(logging.WARNING)
    x_adv, _ = ref.run_standard_evaluation(x, y, batch_size=6)
    with torch.no_grad():
        theirs = (model(x_adv).argmax(1) == y).float().mean().item()
    assert abs(ours - theirs) * 6 <= 1, (ours, theirs)
    clean = aa[aa.metric == "clean_accuracy"].value.iat[0]
    print(f"clean {clean:.3f}, PGD-10 {pgd_acc:.3f}, AutoAttack {ours:.3f}, package {theirs:.3f}")
    assert ours < clean  # not vacuous: the attack broke correctly classified images


@needs_cifar
def test_worst_case_over_pgd_and_autoattack_per_image(tmp_path):
    from click.testing import CliRunner

    import robustbench_vit as rbvit
    from robustbench_vit.cli.commands import main
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.results.worst_case import worst_case

    model = wrap_module(Smooth(), preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    kw = dict(
        data=str(CIFAR10_TEST),
        limit=100,
        batch_size=100,
        progress=False,
        out=str(tmp_path),
        save_samples=True,
    )
    rbvit.evaluate(model, "pgd", suite_params={"epsilons": ("2/255", "8/255"), "steps": 3}, **kw)
    aa = {"eps": "2/255", "aa_version": "custom", "attacks": ("apgd-ce",), "n_iter": 10}
    rbvit.evaluate(model, "autoattack", suite_params=aa, **kw)
    summary, per_image = worst_case(tmp_path, "smooth")
    at2 = summary[summary.eps == round(2 / 255, 8)].iloc[0]
    assert at2.attacks == 2 and at2.n_images == 100
    assert at2.worst_case_robust_accuracy <= at2.strongest_single_attack
    imgs = per_image[per_image.eps == round(2 / 255, 8)]
    assert len(imgs) == 100 and imgs.robust.mean() == pytest.approx(at2.worst_case_robust_accuracy)
    assert imgs[~imgs.robust].broken_by.notna().all() and imgs[imgs.robust].broken_by.isna().all()
    only_pgd = summary[summary.eps == round(8 / 255, 8)].iloc[0]
    assert only_pgd.attacks == 1  # 8/255 was only run by PGD: its worst case is PGD's own
    r = CliRunner().invoke(
        main,
        [
            "worst-case",
            "-r",
            str(tmp_path),
            "-m",
            "smooth",
            "--json",
            "--per-image",
            str(tmp_path / "w.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(r.output.splitlines()) == 2 and (tmp_path / "w.parquet").is_file()
    from robustbench_vit.storage.verified_parquet import file_kind, read_verified

    assert file_kind(tmp_path / "w.parquet") == "worst-case"  # written whole, and never read back as runs
    assert read_verified(tmp_path / "w.parquet").num_rows == len(per_image)


def _package_outcomes(model, x, y, version: str, bs: int, n_iter: int, queries: int) -> torch.Tensor:
    """Per-image robustness from the package itself: one fresh ``AutoAttack`` per batch, configured as its
    own documentation says (version, seed), the quick-look budget set on it, APGD's checkpoints derived
    from n_iter the way APGD's constructor derives them (restated here)."""
    from pyautoattack import AutoAttack

    robust = []
    for s in range(0, len(y), bs):
        xb, yb = x[s : s + bs], y[s : s + bs]
        aa = AutoAttack(model, norm="Linf", eps=2 / 255, version=version, seed=0, device="cpu")
        aa.logger.setLevel(logging.WARNING)
        for apgd in (aa.apgd, aa.apgd_targeted):
            apgd.n_iter = apgd.n_iter_orig = n_iter
            apgd.n_iter_2, apgd.n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
            apgd.size_decr = max(int(0.03 * n_iter), 1)
        aa.fab.n_iter = n_iter
        aa.square.n_queries = queries
        x_adv, _ = aa.run_standard_evaluation(xb, yb, batch_size=len(yb))
        with torch.no_grad():
            robust.append(model(x_adv).argmax(1) == yb)
    return torch.cat(robust)


@needs_cifar
@pytest.mark.parametrize("version", ["standard", "plus", "rand"])
def test_every_version_equals_the_package_image_by_image_over_three_batches(tmp_path, version):
    """Three batches through one suite run (one AutoAttack object, as the suite keeps it) against the
    package: every image's final outcome is the package's. Before the fix, ``plus`` ran untargeted FAB
    with FAB-T's single restart from the second batch on."""
    import robustbench_vit as rbvit
    from robustbench_vit.data.registry import open_dataset
    from robustbench_vit.data.subset import stratified_limit
    from robustbench_vit.models.loading import wrap_module
    from robustbench_vit.storage.reading import load_samples

    model = wrap_module(Smooth(), preprocessing=PRE, name="smooth", device="cpu", dtype="fp32")
    bs, n, n_iter, queries = 20, 60, 10, 50
    rbvit.evaluate(
        model,
        "autoattack",
        data=str(CIFAR10_TEST),
        limit=n,
        batch_size=bs,
        progress=False,
        save_samples=True,
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        suite_params={"eps": "2/255", "square_queries": queries, "n_iter": n_iter, "aa_version": version},
    )
    samples = load_samples(tmp_path / "out")
    final = samples[samples.condition == f"linf/eps=2/255/{version}-reduced"].sort_values("index")
    _, ds = open_dataset(CIFAR10_TEST)
    idx = stratified_limit(ds.targets, n, 0)
    assert final["index"].tolist() == idx.tolist()
    x = torch.stack([ds.read(int(i)) for i in idx]).float() / 255
    y = torch.as_tensor(ds.targets[idx])
    theirs = _package_outcomes(model, x, y, version, bs, n_iter, queries)
    ours = torch.as_tensor(final["correct"].to_numpy().copy())
    assert torch.equal(ours, theirs), (version, ours.sum().item(), theirs.sum().item())
    assert theirs.sum() < _clean(model, x, y) * n  # not vacuous: the attacks broke images


def test_the_n_iter_override_rescales_apgd_checkpoints():
    from robustbench_vit.attacks.autoattack import make_autoattack

    aa = make_autoattack(Smooth(), norm="linf", eps=2 / 255, version="standard", n_iter=10)
    for apgd in (aa.apgd, aa.apgd_targeted):
        assert (apgd.n_iter, apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr) == (10, 2, 1, 1)
    full = make_autoattack(Smooth(), norm="linf", eps=2 / 255, version="standard")
    assert (full.apgd.n_iter, full.apgd.n_iter_2, full.apgd.n_iter_min, full.apgd.size_decr) == (
        100,
        22,
        6,
        3,
    )


def test_plus_runs_untargeted_fab_with_its_five_restarts_in_every_batch():
    """The per-batch loop must configure every stage as the package does: FAB-T's single restart must not
    leak into the next batch's untargeted FAB (it did: from the second batch on, plus ran FAB with 1)."""
    from robustbench_vit.attacks.autoattack import make_autoattack, run_stages, stages_of

    model = Smooth()
    aa = make_autoattack(model, norm="linf", eps=1e-6, version="plus", n_iter=2, square_queries=2)
    calls = []

    def spy(x, y):  # record how FAB is configured, attack nothing (every image stays robust)
        calls.append((aa.fab.targeted, aa.fab.n_restarts))
        return x

    for name in ("apgd", "apgd_targeted", "square"):
        getattr(aa, name).perturb = lambda x, y: x
    aa.fab.perturb = spy
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.rand(8, 3, 32, 32, generator=g)
        with torch.no_grad():
            y = model(x).argmax(1)  # correctly classified: every stage runs
        run_stages(aa, model, x, y, stages_of("plus"))
    assert calls == [(False, 5), (True, 1)] * 3


def test_a_reduced_budget_is_named_after_what_ran():
    """``n_iter``/``square_queries``/``n_restarts`` overrides never carry the version's name alone: a quick
    look can never be ranked beside a standard evaluation."""
    from robustbench_vit.suites import make_suite

    def label(**p):  # type: ignore[no-untyped-def]
        return make_suite("autoattack", p).label

    assert label() == "standard" and label(aa_version="plus") == "plus"
    assert label(n_iter=10) == "standard-reduced" and label(square_queries=100) == "standard-reduced"
    assert label(n_restarts=3) == "standard-modified" and label(aa_version="rand", n_iter=5) == "rand-reduced"
    assert label(aa_version="custom", attacks="apgd-ce", n_iter=10) == "custom"
