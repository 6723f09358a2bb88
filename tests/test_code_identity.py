"""The code that builds a model is part of its identity: the same weights under another version of the
package that builds the architecture, or an entry point / module whose forward was edited, are another
model, recomputed instead of resumed."""

from __future__ import annotations

import importlib
import json
import sys
from importlib import metadata

import pytest
from torch import nn

from robustbench_vit.data import digests
from robustbench_vit.engine.runner import evaluate
from robustbench_vit.models.identity import architecture_code, module_code
from robustbench_vit.models.modules import wrap_module
from robustbench_vit.models.names import resolve_spec
from tests.helpers import CIFAR10_TEST, needs_cifar, write_cifar_card

FACTORY = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        return self.fc(x) * SCALE


SCALE = {scale}


def make():
    cfg = {{"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0,
           "interpolation": "bilinear", "label_space": "cifar10"}}
    return Tiny(), cfg
"""


#: a factory returning a small CIFAR ViT (a saliency model needs a class token), its weights drawn from ``seed``
VIT_FACTORY = """
import timm, torch


def make():
    torch.manual_seed({seed})
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=4,
                            depth=2)
    return net, {{"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3, "label_space": "cifar10"}}
"""


@pytest.fixture(autouse=True)
def _settled(monkeypatch):
    monkeypatch.setattr(digests, "SETTLED_NS", -(10**12))


def test_the_building_package_and_its_version_are_part_of_a_model(monkeypatch):
    assert architecture_code(resolve_spec("test_vit")) == {"timm": metadata.version("timm")}
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "99.0" if d == "timm" else real(d))
    assert architecture_code(resolve_spec("test_vit")) == {"timm": "99.0"}


def _nll(df) -> float:
    return float(df.query("metric == 'nll'").value.iloc[0])


@needs_cifar
def test_a_timm_upgrade_recomputes_instead_of_resuming(tmp_path, monkeypatch):
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    card = str(write_cifar_card(tmp_path / "card"))  # a timm architecture with CIFAR weights
    first = evaluate(card, "clean", progress=False, **kw)
    again = evaluate(card, "clean", progress=False, **kw)
    assert set(again.run_id) == set(first.run_id)  # same code: resumed
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda d: "99.0" if d == "timm" else real(d))
    upgraded = evaluate(card, "clean", progress=False, **kw)
    assert set(upgraded.run_id).isdisjoint(first.run_id)


@needs_cifar
def test_an_entry_point_whose_forward_was_edited_is_recomputed(tmp_path, monkeypatch):
    """Same tensors, same name, another forward: the edit shows in the numbers, never a stale resume."""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "tiny_factory.py"
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))

    def run(scale: float) -> float:
        source.write_text(FACTORY.format(scale=scale))
        sys.modules.pop("tiny_factory", None)
        importlib.invalidate_caches()
        return _nll(evaluate("tiny_factory:make", "clean", progress=False, **kw))

    first = run(1.0)
    assert run(1.0) == first
    edited = run(3.0)
    assert edited != first
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])  # tidy for other tests
    sys.modules.pop("tiny_factory", None)


@needs_cifar
@pytest.mark.parametrize("suite, param", [("transfer", "source"), ("occlusion", "saliency_model")])
def test_an_entry_point_a_suite_builds_is_identified_by_what_it_returns(tmp_path, monkeypatch, suite, param):
    """A transfer source or saliency model given as ``module:factory`` was identified by its name alone: a
    factory that returns other weights resumed the old run and its stored adversarials or maps."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = tmp_path / "ref_factory.py"
    target = str(write_cifar_card(tmp_path / "target", seed=1))
    params = {
        "transfer": {"attack": "fgsm", "population": "all"},
        "occlusion": {"modes": ("salient",), "grid": "8"},
    }
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))

    def run(seed: int):
        source.write_text(VIT_FACTORY.format(seed=seed))
        sys.modules.pop("ref_factory", None)  # a fresh process imports the file as it is
        importlib.invalidate_caches()
        p = {**params[suite], param: "ref_factory:make"}
        return evaluate(target, suite, suite_params=p, progress=False, **kw)

    first = run(0)
    again = run(0)
    assert again.attrs["conditions_computed"] == 0 and set(again.run_id) == set(first.run_id)
    edited = run(1)  # the factory returns other weights
    assert edited.attrs["conditions_computed"] >= 1 and set(edited.run_id).isdisjoint(first.run_id)
    sys.modules.pop("ref_factory", None)


def test_a_module_handed_over_in_python_is_identified_by_its_module_code():
    """Same tensors, another forward, another setting beside the tensors, another torch layer without
    weights: each is another model."""

    class A(nn.Module):
        def __init__(self, temperature: float = 1.0, act: nn.Module | None = None):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.temperature = temperature
            self.act = act or nn.GELU()

        def forward(self, x):
            return self.act(self.fc(x)) / self.temperature

    class B(A):
        def forward(self, x):
            return -self.fc(x)

    cfg = {"input_size": (3, 2, 2), "mean": (0.5,) * 3, "std": (0.5,) * 3, "label_space": "imagenet1k"}
    nets = [A(), B(), A(temperature=2.0), A(act=nn.ReLU()), A(act=nn.GELU(approximate="tanh"))]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    ids = [wrap_module(n, preprocessing=cfg, name="m", device="cpu").identity for n in nets]
    assert len({i["weights"] for i in ids}) == 1  # the tensors are the same ...
    assert len({json.dumps(i["code"]) for i in ids}) == len(nets)  # ... the models are not
    assert module_code(A()) == module_code(A())  # and the same model is the same


@needs_cifar
@pytest.mark.parametrize("change", ["torch upgraded", "rbvit decode version bumped"])
def test_a_library_upgrade_recomputes_redecodes_and_reruns_the_sweep(tmp_path, monkeypatch, change):
    """torch, torchvision and Pillow decode, resize and compute every number, and rbvit's own decoding
    (DECODE_VERSION, bumped by a fix that changes a pixel): after either changes a run, its decoded-image
    cache and a sweep cell are new, never a mix of two implementations (a fixed decoder never reads the
    old decoder's cached pixels)."""
    from robustbench_vit import identity
    from robustbench_vit.identity import software_identity
    from robustbench_vit.sweeps.run import load_sweep, run_sweep

    card = str(write_cifar_card(tmp_path / "card"))
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'[sweep]\nout = "{tmp_path / "sweep-out"}"\ndata = "{CIFAR10_TEST}"\nlimit = 10\n'
        f'models = ["{card}"]\n[[suite]]\nname = "clean"\n'
    )
    software_identity.cache_clear()
    first = evaluate(card, "clean", progress=False, **kw)
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]
    assert [s.status for s in run_sweep(load_sweep(toml))] == ["skipped"]
    caches = {p.name for p in (tmp_path / "c").iterdir() if p.is_dir() and p.name != "identity"}
    real = metadata.version
    if change == "torch upgraded":
        monkeypatch.setattr(metadata, "version", lambda d: "99.0" if d == "torch" else real(d))
    else:
        monkeypatch.setattr(identity, "DECODE_VERSION", identity.DECODE_VERSION + 1)
    software_identity.cache_clear()
    try:
        upgraded = evaluate(card, "clean", progress=False, **kw)
        assert set(upgraded.run_id).isdisjoint(first.run_id)
        assert {p.name for p in (tmp_path / "c").iterdir() if p.is_dir()} - caches - {"identity"}
        assert [s.status for s in run_sweep(load_sweep(toml))] == ["done"]
    finally:
        monkeypatch.undo()
        software_identity.cache_clear()


def test_a_pil_fork_keys_runs_by_its_own_version(monkeypatch):
    """pillow-simd installs under PIL's import name with another distribution name: its version (which
    can decode and resize otherwise) keys runs and caches, never "pillow not installed" for every fork."""
    from robustbench_vit import identity, installed_code
    from robustbench_vit.identity import software_identity

    real = metadata.version

    def version(dist: str) -> str:
        if dist.lower() == "pillow":
            raise metadata.PackageNotFoundError(dist)
        return "9.5.0.post1" if dist == "Pillow-SIMD" else real(dist)

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(installed_code, "module_distributions", lambda: {"PIL": ["Pillow-SIMD"]})
    identity.library_versions.cache_clear()
    software_identity.cache_clear()
    try:
        assert software_identity()["pillow"] == "Pillow-SIMD 9.5.0.post1"
    finally:
        monkeypatch.undo()
        identity.library_versions.cache_clear()
        software_identity.cache_clear()
    assert software_identity()["pillow"] == real("pillow")  # the usual install: the key as before


@needs_cifar
def test_an_upgrade_of_a_library_a_suite_computes_with_reruns_it_and_only_it(tmp_path, monkeypatch):
    """The corruption suite computes with OpenCV and imagecorruptions (frost photographs, the reference
    backend): a new OpenCV is another corruptions run (and sweep cell), while a clean run, which uses
    neither, resumes."""
    from robustbench_vit.identity import library_versions
    from robustbench_vit.suites import make_suite

    card = str(write_cifar_card(tmp_path / "card"))
    kw = dict(data=str(CIFAR10_TEST), limit=10, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    params = {"corruptions": ("frost",), "severities": (1,)}
    assert set(make_suite("corruptions", params).identity()["libraries"]) == {"cv2", "imagecorruptions"}
    first = {
        s: evaluate(card, s, suite_params=p, progress=False, **kw)
        for s, p in (("corruptions", params), ("clean", {}))
    }
    from robustbench_vit import installed_code

    # the upgrade seen through rbvit's reader of installed versions (a patch of importlib.metadata itself
    # would be a library patched in memory, which keys every run: robustbench_vit.library_patches)
    real = installed_code.installed_version
    monkeypatch.setattr(
        installed_code, "installed_version", lambda d: "99.0" if d.startswith("opencv") else real(d)
    )
    library_versions.cache_clear()
    try:
        again = {
            s: evaluate(card, s, suite_params=p, progress=False, **kw)
            for s, p in (("corruptions", params), ("clean", {}))
        }
        assert set(again["corruptions"].run_id).isdisjoint(first["corruptions"].run_id)
        assert again["corruptions"].attrs["conditions_computed"] == 1
        assert set(again["clean"].run_id) == set(first["clean"].run_id)
        assert again["clean"].attrs["conditions_computed"] == 0
    finally:
        monkeypatch.undo()
        library_versions.cache_clear()
