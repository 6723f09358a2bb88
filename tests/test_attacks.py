"""PGD invariants in [0, 1] pixel space, and the pgd suite end to end (issue 6)."""

import pytest
import torch

from robustbench_vit.attacks import PGD, parse_eps
from robustbench_vit.attacks.base import project
from robustbench_vit.errors import ConfigError
from robustbench_vit.models.loading import load_model
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar, needs_effnet, needs_imagenet


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("timm:test_resnet", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def batch(tiny):
    x = torch.rand(16, 3, *tiny.data_config.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny(x).argmax(1)  # labels = clean predictions: clean accuracy 1
    return x, y


def gen():
    return torch.Generator().manual_seed(0)


def test_parse_eps():
    assert parse_eps("4/255") == pytest.approx(4 / 255) and parse_eps("0.5") == 0.5
    assert parse_eps("0.5/255") == pytest.approx(0.5 / 255) and parse_eps(" 8 / 255 ") == pytest.approx(
        8 / 255
    )
    for malformed in ("4/255/2", "4/", "/255", "1/0", "0x10"):  # never a different number than written
        with pytest.raises(ConfigError):
            parse_eps(malformed)


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.5)])
def test_perturbation_within_ball_and_range(tiny, batch, norm, eps):
    x, y = batch
    r = PGD(norm=norm, eps=eps, steps=5)(tiny, x, y, generator=gen())
    d = (r.x_adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


def test_project():
    x = torch.full((1, 3, 4, 4), 0.5)
    assert (project(x + 1, x, 0.1, "linf") - x).abs().max() == pytest.approx(0.1)
    p = project(x + 1, x, 0.5, "l2")
    assert (p - x).norm() == pytest.approx(0.5, rel=1e-4)


def test_robust_leq_clean_and_eps_zero_is_clean(tiny, batch):
    x, y = batch
    with torch.no_grad():
        clean = (tiny(x).argmax(1) == y).float().mean()
    r = PGD(eps=2 / 255, steps=5)(tiny, x, y, generator=gen())
    with torch.no_grad():
        robust = (tiny(r.x_adv).argmax(1) == y).float().mean()
    assert robust <= clean
    r0 = PGD(eps=0.0, steps=5)(tiny, x, y, generator=gen())
    assert torch.equal(r0.x_adv, x) and not r0.success.any()


def test_more_steps_never_raise_robust_accuracy(tiny, batch):
    x, y = batch
    prev = None
    for steps in (1, 2, 5, 10):
        r = PGD(eps=1 / 255, steps=steps, step_size=0.25 / 255)(tiny, x, y, generator=gen())
        acc = (~r.success).float().mean().item()
        assert prev is None or acc <= prev + 1e-9
        prev = acc


def test_restarts_keep_worst_case(tiny, batch):
    x, y = batch
    one = PGD(eps=1 / 255, steps=2, restarts=1)(tiny, x, y, generator=gen())
    three = PGD(eps=1 / 255, steps=2, restarts=3)(tiny, x, y, generator=gen())
    assert three.success.sum() >= one.success.sum()
    with torch.no_grad():
        assert torch.equal(tiny(three.x_adv).argmax(1) != y, three.success)


def test_targeted_reaches_targets(tiny, batch):
    x, y = batch
    t = (y + 1) % 1000
    r = PGD(eps=16 / 255, steps=10, targeted=True)(tiny, x, t, generator=gen())
    with torch.no_grad():
        assert torch.equal(tiny(r.x_adv).argmax(1) == t, r.success)


def test_inputs_outside_unit_range_are_rejected(tiny, batch):
    x, y = batch
    with pytest.raises(Exception, match=r"\[0, 1\]"):
        PGD(eps=0.1)(tiny, x * 2 - 1, y, generator=gen())


def test_torch_and_foolbox_backends_agree_on_tiny_model(tmp_path):
    torch.manual_seed(0)
    model = load_model("timm:test_resnet", pretrained=False, device="cpu")
    x = torch.rand(24, 3, *model.data_config.image_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    import foolbox as fb

    fmodel = fb.PyTorchModel(model.module, bounds=(0, 1))
    eps, steps, step = 0.5 / 255, 10, 0.125 / 255
    _, adv_fb, succ_fb = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=False)(
        fmodel, x, fb.criteria.Misclassification(y), epsilons=eps
    )
    ours = PGD(eps=eps, steps=steps, step_size=step, random_start=False)(model, x, y, generator=gen())
    assert abs(ours.success.float().mean() - succ_fb.float().mean()) <= 2 / 24


@needs_cifar
def test_pgd_suite_rows_and_per_sample_flags(tmp_path, cifar_card):
    import robustbench_vit as rbvit
    from robustbench_vit.storage.reading import load_samples

    df = rbvit.evaluate(
        str(cifar_card),
        "pgd",
        data=str(CIFAR10_TEST),
        limit=20,
        out=str(tmp_path),
        save_samples=True,
        suite_params={"epsilons": ("0", "8/255"), "steps": 3},
    )
    eps0 = df[df.condition == "linf/eps=0"].set_index("metric")["value"]
    assert eps0["robust_accuracy"] == eps0["clean_accuracy"]
    e8 = df[df.condition == "linf/eps=8/255"].set_index("metric")["value"]
    assert e8["robust_accuracy"] <= e8["clean_accuracy"] and set(df.metric) == {
        "robust_accuracy",
        "clean_accuracy",
        "attack_success_rate",
    }
    s = load_samples(tmp_path)
    adv = s[s.condition == "linf/eps=8/255"].set_index("index")["correct"]
    worst = adv & s[s.condition == "linf/eps=0"].set_index("index")["correct"]  # per-image worst case
    assert worst.mean() == pytest.approx(min(e8["robust_accuracy"], eps0["robust_accuracy"]), abs=1e-9)


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_pgd_breaks_efficientnet_and_foolbox_agrees(tmp_path):
    import robustbench_vit as rbvit

    kw = dict(data=str(IMAGENET_SAMPLES), limit=50, batch_size=50, out=str(tmp_path))
    ours = rbvit.evaluate("efficientnet_lite0", "pgd", suite_params={"epsilons": ("4/255",)}, **kw)
    ref = rbvit.evaluate(
        "efficientnet_lite0", "pgd", suite_params={"epsilons": ("4/255",), "backend": "foolbox"}, **kw
    )
    a = ours.set_index("metric")["value"]
    b = ref.set_index("metric")["value"]
    assert a["clean_accuracy"] > 0.6 and a["robust_accuracy"] < 0.05
    assert abs(a["robust_accuracy"] - b["robust_accuracy"]) <= 0.02
    assert a["robust_accuracy"] <= a["clean_accuracy"]


def test_keep_last_is_foolbox_final_step_pgd():
    """``keep=last`` reproduces foolbox's LinfPGD (final iterate) given the same start and steps;
    ``first_success`` (our default) is at least as strong."""
    import foolbox as fb

    model = load_model("timm:test_resnet", pretrained=False, device="cpu")
    x = torch.rand(16, 3, *model.data_config.image_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = model(x).argmax(1)
    eps, steps, step = 1 / 255, 8, 0.4 / 255
    _, adv_fb, succ_fb = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=False)(
        fb.PyTorchModel(model.module, bounds=(0, 1)), x, fb.criteria.Misclassification(y), epsilons=eps
    )
    last = PGD(eps=eps, steps=steps, step_size=step, random_start=False, keep="last")(
        model, x, y, generator=gen()
    )
    first = PGD(eps=eps, steps=steps, step_size=step, random_start=False)(model, x, y, generator=gen())
    assert (last.x_adv - adv_fb).abs().max() < 1e-5
    assert torch.equal(last.success, succ_fb)
    assert first.success.sum() >= last.success.sum()


def test_pgd_suite_keep_parameter_and_l2_default():
    from robustbench_vit.errors import ConfigError
    from robustbench_vit.suites import make_suite
    from robustbench_vit.suites.pgd import default_epsilons

    assert make_suite("pgd", {"keep": "last"}).keep == "last"
    with pytest.raises(ConfigError, match="keep"):
        make_suite("pgd", {"keep": "best"})
    assert default_epsilons("l2", (224, 224)) == ("3.0",) and default_epsilons("l2", (32, 32)) == ("0.5",)
