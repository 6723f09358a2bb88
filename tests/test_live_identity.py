"""A model handed over in Python is identified by what it computes with, not only by its files and
``state_dict``: a buffer outside the ``state_dict``, a tensor or dict kept as an attribute, a hook, a
``forward`` replaced on the instance or the class, a global its code reads, a hook registered for every
module, and a model changed after ``load_model`` handed it over. After each change the same ``out=``
recomputes and equals a from-scratch evaluation; unchanged, it resumes with zero recomputation."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import timm
import torch
from torch import nn

import robustbench_vit as rbvit
from robustbench_vit.fingerprint import global_hooks_digest, runtime_digest
from robustbench_vit.models.identity import module_code
from tests.helpers import CIFAR10_TEST, needs_cifar, write_cifar_card

PRE = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "label_space": "cifar10"}
SCALE = 1.0  # read by Net.forward: a notebook's global constant


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(10))
        self.body(torch.zeros(1, 3, 32, 32))  # materialise the lazy layer
        self.register_buffer("gain", torch.tensor(1.0), persistent=False)
        self.temperature = torch.tensor(1.0)  # a tensor kept as a plain attribute
        self.options = {"divide": 1.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.gain * SCALE / self.temperature / self.options["divide"]


def _set_scale(net: nn.Module) -> None:
    global SCALE
    SCALE = 3.0


def _replace_class_forward(net: nn.Module) -> None:
    original = Net.forward
    Net.forward = lambda self, x: original(self, x) * 2  # type: ignore[method-assign]
    _undo.append(lambda: setattr(Net, "forward", original))


def _global_hook(net: nn.Module) -> None:
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 2 if m is net.body else o)
    _undo.append(handle.remove)


_undo: list[Callable[[], object]] = []

#: a change a notebook makes to a module it evaluates, leaving its state_dict as it was
MODULE_CHANGES: dict[str, Callable[[nn.Module], object]] = {
    "buffer outside the state_dict": lambda n: n.gain.fill_(3.0),
    "tensor attribute": lambda n: n.temperature.fill_(3.0),
    "dict attribute": lambda n: n.options.update(divide=3.0),
    "forward hook": lambda n: n.body.register_forward_hook(lambda m, i, o: o * 3),
    "forward pre-hook": lambda n: n.body.register_forward_pre_hook(lambda m, i: (i[0] * 3,)),
    "forward set on the instance": lambda n: setattr(
        n.body, "forward", lambda x: nn.Sequential.forward(n.body, x) * 3
    ),
    "forward replaced on the class": _replace_class_forward,
    "global constant the forward reads": _set_scale,
    "hook for every module": _global_hook,
}


@pytest.fixture(autouse=True)
def _restore():
    global SCALE
    yield
    SCALE = 1.0
    while _undo:
        _undo.pop()()


def _nll(model, out, **kw) -> tuple[float, int]:
    df = rbvit.evaluate(model, "clean", data=str(CIFAR10_TEST), limit=20, out=out, progress=False, **kw)
    return float(df.query("metric == 'nll'").value.iloc[0]), df.attrs["conditions_computed"]


@needs_cifar
@pytest.mark.parametrize("change", list(MODULE_CHANGES))
def test_a_module_changed_beside_its_state_dict_is_recomputed(tmp_path, change):
    out = tmp_path / "out"
    net = Net()
    before, _ = _nll(net, out, preprocessing=PRE)
    assert _nll(net, out, preprocessing=PRE) == (before, 0)  # unchanged: resumed
    state = {k: v.clone() for k, v in net.state_dict().items()}
    MODULE_CHANGES[change](net)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # the state_dict is the same
    after, computed = _nll(net, out, preprocessing=PRE)
    fresh, _ = _nll(net, None, preprocessing=PRE)
    assert computed == 1 and after == fresh != before


#: a change made to a model ``load_model`` handed over, before evaluating it
LOADED_CHANGES: dict[str, Callable[[rbvit.LoadedModel], object]] = {
    "weights edited in place": lambda m: m.net.head.weight.mul_(2),
    "weights edited through .data": lambda m: m.net.head.weight.data.mul_(2),
    "hook added": lambda m: m.net.register_forward_hook(lambda mod, i, o: o * 3),
    "hook for every module": lambda m: _undo.append(
        nn.modules.module.register_module_forward_hook(lambda mod, i, o: o * 2 if mod is m.net else o).remove
    ),
}


@needs_cifar
@pytest.mark.parametrize("change", list(LOADED_CHANGES))
def test_a_loaded_model_changed_before_its_evaluation_is_keyed_by_its_state(tmp_path, change):
    card = write_cifar_card(tmp_path / "card")
    out = tmp_path / "out"
    model = rbvit.load_model(str(card), device="cpu")
    before, _ = _nll(model, out)
    assert _nll(model, out) == (before, 0)
    LOADED_CHANGES[change](model)
    after, computed = _nll(model, out)
    fresh, _ = _nll(model, None)
    assert computed == 1 and after == fresh != before
    while _undo:
        _undo.pop()()
    # the card loaded again is the card's model: its first run resumes
    assert _nll(rbvit.load_model(str(card), device="cpu"), out) == (before, 0)


@needs_cifar
def test_a_loaded_model_left_in_training_mode_is_evaluated_in_eval_mode(tmp_path, caplog):
    card = write_cifar_card(tmp_path / "card", arch="resnet18")  # batch norm: training mode changes numbers
    out = tmp_path / "out"
    reference, _ = _nll(str(card), None)
    model = rbvit.load_model(str(card), device="cpu")
    model.module.train()
    with caplog.at_level(logging.WARNING):
        assert _nll(model, out) == (reference, 1)
    assert "was in training mode" in caplog.text
    assert not model.module.training
    assert _nll(model, out) == (reference, 0)


def test_the_runtime_digest_ignores_what_never_changes_an_output():
    """Hook handles count registrations in the process, sets iterate in a hashed order, and state-dict
    hooks never change an output: none of them is part of the digest."""
    net = Net()
    first = runtime_digest(net)
    handle = net.body.register_forward_hook(lambda m, i, o: o)
    with_hook = runtime_digest(net)
    handle.remove()
    assert runtime_digest(net) == first != with_hook
    net.body.register_forward_hook(lambda m, i, o: o)  # the same hook again, under a new handle id
    assert runtime_digest(net) == with_hook
    plain = Net()
    plain._register_state_dict_hook(lambda *a: None)
    assert runtime_digest(plain) == first
    assert global_hooks_digest() is None


def test_module_code_is_the_same_in_every_process():
    """The digest keys stored runs, so two processes (each with its own string-hash seed) agree on it."""
    script = textwrap.dedent(
        """
        import timm, torch
        from torch import nn
        from robustbench_vit.models.identity import module_code

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = timm.create_model("test_vit", pretrained=False)
                self.kinds = {"low", "high", "band"}
            def forward(self, x):
                return self.body(x) if "low" in {"low", "high"} else -x

        print(module_code(M()))
        """
    )
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        digests.add(done.stdout.strip())
    assert len(digests) == 1


def test_a_timm_model_wrapped_twice_has_one_identity():
    torch.manual_seed(0)
    a = timm.create_model("test_vit", pretrained=False)
    torch.manual_seed(0)
    b = timm.create_model("test_vit", pretrained=False)
    assert module_code(a) == module_code(b) and runtime_digest(a) == runtime_digest(b)
    b.blocks[0].attn.fused_attn = not b.blocks[0].attn.fused_attn  # another attention kernel
    assert module_code(a) != module_code(b)


@needs_cifar
def test_a_loaded_model_runs_at_the_dtype_it_was_loaded_with(tmp_path):
    """The rows, their config and their key say the precision the model computed at: a bf16 model's run
    equals a bf16 run by name, and asking it for another dtype is refused (it was silently ignored)."""
    import json

    from robustbench_vit.errors import ConfigError

    card = str(write_cifar_card(tmp_path / "card"))
    model = rbvit.load_model(card, device="cpu", dtype="bf16")
    kw = dict(data=str(CIFAR10_TEST), limit=20, progress=False)
    got = rbvit.evaluate(model, "clean", **kw)
    by_name = rbvit.evaluate(card, "clean", dtype="bf16", **kw)
    assert got.value.tolist() == by_name.value.tolist() and set(got.run_id) == set(by_name.run_id)
    assert {json.loads(c)["options"]["dtype"] for c in got.config} == {"bf16"} == set(got.dtype)
    with pytest.raises(ConfigError, match="was loaded with dtype bf16"):
        rbvit.evaluate(model, "clean", dtype="fp32", **kw)


def test_a_loaded_model_asked_for_another_device_is_refused(tmp_path, monkeypatch):
    """A model the caller loaded computes on the device it was loaded on: ``evaluate(model, device="cuda")``
    of a model loaded on the CPU was silently run on the CPU. The device named is compared with the model's
    (this machine has no GPU: the device selection is stood in for, the comparison is what is tested)."""
    import torch

    from robustbench_vit import device as devices
    from robustbench_vit.errors import ConfigError

    model = rbvit.load_model(str(write_cifar_card(tmp_path / "card")), device="cpu")
    kw = dict(data=str(CIFAR10_TEST), limit=10, progress=False)
    assert len(rbvit.evaluate(model, "clean", device="cpu", **kw))  # its own device, named: runs
    real = devices.select_device
    monkeypatch.setattr(
        devices, "select_device", lambda d=None: torch.device(d) if d == "cuda:1" else real(d)
    )
    with pytest.raises(ConfigError, match=r"was loaded on cpu, not cuda:1: pass device= to load_model"):
        rbvit.evaluate(model, "clean", device="cuda:1", **kw)


def test_a_deeply_nested_attribute_is_hashed_without_overflowing_the_stack():
    """A linked structure kept on a module (thousands of levels) is walked to a bounded depth."""

    class Node:
        def __init__(self, nxt: object) -> None:
            self.nxt = nxt

    head: object = None
    for _ in range(5000):
        head = Node(head)
    net = Net()
    net.chain = head
    assert runtime_digest(net) == runtime_digest(net) != runtime_digest(Net())
    assert module_code(net)


def test_a_helper_module_edited_and_reloaded_is_another_model(tmp_path, monkeypatch):
    """The forward calls a function of the user's own module: the digest follows the code in memory, so
    editing the file changes nothing until it is reloaded, and the reload is another model."""
    import importlib

    (tmp_path / "my_helpers.py").write_text("def scale(x):\n    return x * 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        sys, "dont_write_bytecode", True
    )  # a .pyc of the same second and size would be reused
    helpers = importlib.import_module("my_helpers")

    class UsesHelper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return helpers.scale(self.fc(x))

    net = UsesHelper()
    first = module_code(net)
    (tmp_path / "my_helpers.py").write_text("def scale(x):\n    return x * 3.0\n")
    assert module_code(net) == first  # the code that runs is still the old one
    importlib.reload(helpers)
    assert module_code(net) != first
    sys.modules.pop("my_helpers", None)


def test_a_class_is_identified_by_its_code_in_memory_not_its_file(tmp_path, monkeypatch):
    """A module built of a class from a file: editing the file without reloading it runs the same code
    (the same model), and the class reloaded from the edited file is another one."""
    import importlib

    source = "from torch import nn\n\nclass Head(nn.Linear):\n    def forward(self, x):\n        return super().forward(x) * {k}\n"
    (tmp_path / "my_heads.py").write_text(source.format(k="1.0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    heads = importlib.import_module("my_heads")
    net = heads.Head(2, 2)
    first = module_code(net)
    (tmp_path / "my_heads.py").write_text(source.format(k="3.0"))
    assert module_code(net) == first
    importlib.reload(heads)
    again = heads.Head(2, 2)
    again.load_state_dict(net.state_dict())
    assert module_code(again) != first
    sys.modules.pop("my_heads", None)


@needs_cifar
def test_a_quantized_module_is_identified_by_its_integers_and_scales(tmp_path):
    """A dynamically quantized model keeps packed parameters (tuples of quantized tensors) in its
    state_dict: they are hashed (their integers and scales), never a crash."""
    import warnings

    from robustbench_vit.models.modules import state_digest

    def quantized(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 10))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice
            return torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)

    a, b, c = quantized(0), quantized(0), quantized(1)
    assert state_digest(a) == state_digest(b) != state_digest(c)
    out = tmp_path / "out"
    assert _nll(a, out, preprocessing=PRE)[1] == 1
    assert _nll(b, out, preprocessing=PRE)[1] == 0  # the same integers and scales: resumed
    assert _nll(c, out, preprocessing=PRE)[1] == 1


@needs_cifar
@pytest.mark.parametrize("convert", ["half", "bfloat16", "double"])
def test_a_module_in_another_float_type_is_one_line_naming_autocast(tmp_path, convert):
    """A ``.half()`` module failed on float32 pixels with an error about the input size."""
    from robustbench_vit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"weights: hand over a float32 model \(net.float\(\)\)"):
        _nll(getattr(Net(), convert)(), None, preprocessing=PRE)
    loaded = rbvit.load_model(str(write_cifar_card(tmp_path / "card")), device="cpu")
    getattr(loaded.net, convert)()
    with pytest.raises(ConfigError, match="weights: hand over a float32 model"):
        _nll(loaded, None)


@needs_cifar
def test_a_module_evaluated_between_epochs_goes_on_training(tmp_path):
    """The run sets the caller's module to eval mode and stops its weights' gradients; after it, the
    module's training modes and requires_grad flags are its own again, and no gradient was left on it."""
    net = Net().train()
    net.body[1].eval()  # a frozen batch norm stays frozen
    net.body[0].bias.requires_grad_(False)
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    _nll(net, None, preprocessing=PRE)
    rbvit.evaluate(
        net,
        "pgd",
        data=str(CIFAR10_TEST),
        limit=4,
        preprocessing=PRE,
        progress=False,
        suite_params={"steps": 1, "epsilons": ("1/255",)},
    )
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    net(torch.rand(2, 3, 32, 32)).sum().backward()  # training goes on
    assert net.body[3].weight.grad is not None


@needs_cifar
@pytest.mark.parametrize("kind", ["loaded model edited", "module given a hook", "hook for every module"])
def test_a_changed_model_is_another_board_entry_never_a_second_seed(tmp_path, kind):
    """Two seeds of one board entry must be one model: a run of the changed model is labelled apart
    (its weights column says what changed), never pooled with the first as its second seed."""
    out = tmp_path / "out"
    model = (
        rbvit.load_model(str(write_cifar_card(tmp_path / "card")), device="cpu")
        if kind == "loaded model edited"
        else Net()
    )
    kw = dict(
        data=str(CIFAR10_TEST),
        limit=10,
        out=out,
        progress=False,
        **({} if kind == "loaded model edited" else {"preprocessing": PRE}),
    )
    first = rbvit.evaluate(model, "clean", seed=0, **kw)
    if kind == "loaded model edited":
        with torch.no_grad():
            model.net.head.weight.mul_(3)
    elif kind == "module given a hook":
        model.body.register_forward_hook(lambda m, i, o: o * 3)
    else:
        _global_hook(model)
    second = rbvit.evaluate(model, "clean", seed=1, **kw)
    assert set(first.weights).isdisjoint(second.weights)  # the weights column says the model changed
    board = rbvit.build_leaderboard(out).query("metric == 'top1'")
    assert len(board) == 2 and set(board.n_seeds) == {1}


@needs_cifar
def test_inference_mode_around_a_run_never_breaks_an_attack(tmp_path):
    """A notebook cell under ``torch.inference_mode()``: PGD needs autograd, so the run leaves inference mode
    (it failed with an autograd error), a model loaded there has plain weights, and a module built there is
    one line saying so."""
    from robustbench_vit.errors import ConfigError

    card = str(write_cifar_card(tmp_path / "card"))
    kw = dict(
        data=str(CIFAR10_TEST), limit=8, progress=False, suite_params={"steps": 2, "epsilons": ("2/255",)}
    )
    expected = rbvit.evaluate(card, "pgd", **kw).value.fillna(-1).tolist()
    with torch.inference_mode():
        assert rbvit.evaluate(card, "pgd", **kw).value.fillna(-1).tolist() == expected
        loaded = rbvit.load_model(card, device="cpu")
        built = Net()
    assert rbvit.evaluate(loaded, "pgd", **kw).value.fillna(-1).tolist() == expected
    with pytest.raises(ConfigError, match="made under torch.inference_mode"):
        rbvit.evaluate(built, "pgd", preprocessing=PRE, **kw)


@needs_cifar
def test_a_module_returning_a_logits_entry_is_read_by_it(tmp_path):
    """Hugging Face classifiers return an output object (a dict) with ``logits``: the run reads it, as it
    reads the bare tensor; an output without logits is one line naming what it returned."""
    from robustbench_vit.errors import ConfigError

    class Wrapped(nn.Module):
        def __init__(self, key: str = "logits") -> None:
            super().__init__()
            self.inner, self.key = Net(), key

        def forward(self, pixel_values: torch.Tensor) -> dict:
            return {self.key: self.inner(pixel_values)}

    kw = dict(data=str(CIFAR10_TEST), limit=8, progress=False, preprocessing=PRE)
    bare = rbvit.evaluate(Net(), "clean", **kw).value.tolist()
    assert rbvit.evaluate(Wrapped(), "clean", **kw).value.tolist() == bare
    with pytest.raises(ConfigError, match="the model returned scores, not logits"):
        rbvit.evaluate(Wrapped("scores"), "clean", **kw)


@needs_cifar
def test_a_normalisation_other_than_the_recorded_one_is_refused(tmp_path):
    """Rows record the model's data config: a mean edited in the wrapper, or a data config replaced beside
    it, would record one normalisation and compute another. Both are one line naming with_preprocessing."""
    import dataclasses

    from robustbench_vit.errors import ConfigError
    from robustbench_vit.models.modules import with_preprocessing

    card = str(write_cifar_card(tmp_path / "card"))
    model = rbvit.load_model(card, device="cpu")
    with torch.no_grad():
        model.module.mean.fill_(0.2)
    with pytest.raises(ConfigError, match="normalises with"):
        _nll(model, None)
    model = rbvit.load_model(card, device="cpu")
    replaced = dataclasses.replace(model, data_config=model.data_config.replace(mean=(0.2, 0.2, 0.2)))
    with pytest.raises(ConfigError, match="change preprocessing with with_preprocessing"):
        _nll(replaced, None)
    overridden = with_preprocessing(model, {"mean": (0.2, 0.2, 0.2)})  # the way to change it
    assert _nll(overridden, None)[0] != _nll(model, None)[0]
