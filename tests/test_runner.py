"""Runner behaviour: OOM batch halving, suite parameter coercion, one-file-per-condition resume."""

import pytest
import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.suites import Suite, make_suite
from tests.helpers import CIFAR10_TEST, IMAGENET_SAMPLES, needs_cifar


@needs_cifar
def test_cuda_oom_halves_the_batch_and_records_it(monkeypatch, tmp_path, cifar_card):
    from robustbench_vit.runner import evaluate

    calls = []
    original = Suite._run

    def flaky(self, ctx, cond, bs):
        calls.append(bs)
        if bs > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return original(self, ctx, cond, bs)

    monkeypatch.setattr(Suite, "_run", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    df = evaluate(
        str(cifar_card), "clean", data=str(CIFAR10_TEST), limit=40, batch_size=64, out=str(tmp_path)
    )
    assert calls == [64, 32, 16] and (df.batch_size == 16).all() and (df.n == 40).all()


def test_suite_parameters_are_coerced_and_checked():
    s = make_suite("occlusion", {"fractions": "0,0.5", "repeats": "3", "offset": "true", "grid": "8"})
    assert s.fractions == (0.0, 0.5) and s.repeats == 3 and s.offset is True and s.grid == "8"
    with pytest.raises(ConfigError, match="has no parameter"):
        make_suite("occlusion", {"fraction": "0.5"})
    with pytest.raises(ConfigError, match="not a valid"):
        make_suite("occlusion", {"repeats": "many"})
    with pytest.raises(ConfigError, match="fill"):
        make_suite("occlusion", {"fill": "purple"})


@needs_cifar
def test_evaluate_accepts_any_module(tmp_path):
    """A notebook's nn.Module: preprocessing from its timm pretrained_cfg or given explicitly; the
    module's tensors identify its weights (a changed module is a new run)."""
    import timm

    import robustbench_vit as rbvit
    from robustbench_vit.errors import ConfigError

    net = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    pre = {
        "input_size": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "crop_pct": 1.0,
        "label_space": "cifar10",
    }
    kw = dict(data=str(CIFAR10_TEST), limit=20, out=str(tmp_path))
    a = rbvit.evaluate(net, "clean", preprocessing=pre, name="my_net", **kw)
    assert set(a.model) == {"my_net"} and a["weights"].iat[0].startswith("module sha256:")
    assert a["input_size"].iat[0] == 32
    with torch.no_grad():
        net.fc.bias.add_(1.0)
    b = rbvit.evaluate(net, "clean", preprocessing=pre, name="my_net", **kw)
    assert a["run_id"].iat[0] != b["run_id"].iat[0]
    imagenet_net = timm.create_model("test_resnet", pretrained=False)
    m = rbvit.evaluate(imagenet_net, "clean", data=str(IMAGENET_SAMPLES), limit=5, out=None)
    assert m["preprocessing_source"].iat[0].startswith("module:") and m["model"].iat[0] == "test_resnet"
    with pytest.raises(ConfigError, match="preprocessing"):
        rbvit.evaluate(torch.nn.Linear(3, 3), "clean", data=str(CIFAR10_TEST), limit=5, out=None)
