"""``robustbench:`` model names: parsed offline, checked against RobustBench's zoo when the package is
installed (faked here: the real one pins an old timm), preprocessing read from its own transforms."""

from __future__ import annotations

import sys
import types
from enum import Enum

import pytest
import torch
from torchvision import transforms as T

from robustbench_vit.errors import ConfigError, UnknownNameError, WeightsUnavailableError
from robustbench_vit.models.names import resolve_spec
from robustbench_vit.models.robustbench_source import config_from_transforms


def test_names_parse_offline_into_folder_safe_specs():
    spec = resolve_spec("robustbench:Linf/Salman2020Do_R50")
    assert (spec.source, spec.arch, spec.label_space) == (
        "robustbench",
        "imagenet/Linf/Salman2020Do_R50",
        "imagenet1k",
    )
    assert spec.name == "Salman2020Do_R50.rb_imagenet_linf" and spec.family == "cnn"
    vit = resolve_spec("robustbench:cifar10/l2/Debenedetti2022Light_XCiT-S12")
    assert vit.arch == "cifar10/L2/Debenedetti2022Light_XCiT-S12" and vit.label_space == "cifar10"
    assert vit.family == "vit"
    with pytest.raises(ConfigError, match="threat model 'Linfinity' not in Linf, L2, corruptions"):
        resolve_spec("robustbench:Linfinity/Salman2020Do_R50")
    with pytest.raises(ConfigError, match="dataset 'svhn'"):
        resolve_spec("robustbench:svhn/Linf/x")
    with pytest.raises(ConfigError, match="write robustbench:<threat>/<model_id>"):
        resolve_spec("robustbench:Salman2020Do_R50")


def test_preprocessing_is_read_from_robustbench_transforms():
    """RobustBench's eval transforms (restated: Res256Crop224, BicubicRes256Crop224, Res224, none, Crop288)."""
    res = config_from_transforms(
        T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()]), dataset="imagenet", source="s"
    )
    assert (res.image_size, res.resize_size, res.interpolation, res.crop_mode) == (
        (224, 224),
        (256, 256),
        "bilinear",
        "center",
    )
    assert res.mean == (0.0, 0.0, 0.0) and res.std == (1.0, 1.0, 1.0)  # the models normalise inside
    bic = T.Compose(
        [T.Resize(256, interpolation=T.InterpolationMode("bicubic")), T.CenterCrop(224), T.ToTensor()]
    )
    assert config_from_transforms(bic, dataset="imagenet", source="s").interpolation == "bicubic"
    squash = config_from_transforms(
        T.Compose([T.Resize([224, 224]), T.ToTensor()]), dataset="imagenet", source="s"
    )
    assert squash.crop_mode == "squash" and squash.resize_size == (224, 224)
    cifar = config_from_transforms(T.Compose([T.ToTensor()]), dataset="cifar10", source="s")
    assert cifar.image_size == (32, 32) and cifar.crop_pct == 1.0
    with pytest.raises(ConfigError, match="without resizing"):
        config_from_transforms(T.Compose([T.CenterCrop(288), T.ToTensor()]), dataset="imagenet", source="s")


@pytest.fixture
def fake_robustbench(monkeypatch):
    """A stand-in for the package: its enums, a two-model zoo, its preprocessing and an offline loader."""

    class BenchmarkDataset(Enum):
        cifar_10 = "cifar10"
        imagenet = "imagenet"

    class ThreatModel(Enum):
        Linf = "Linf"
        L2 = "L2"
        corruptions = "corruptions"

    def tiny():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 224 * 224, 1000))

    zoo = {
        BenchmarkDataset.imagenet: {
            ThreatModel.Linf: {"Salman2020Do_R50": {"model": tiny}, "Wong2020Fast": {"model": tiny}},
            ThreatModel.L2: {},
            ThreatModel.corruptions: {},
        },
        BenchmarkDataset.cifar_10: {ThreatModel.Linf: {}, ThreatModel.L2: {}, ThreatModel.corruptions: {}},
    }
    pkg = types.ModuleType("robustbench")
    model_zoo = types.ModuleType("robustbench.model_zoo")
    model_zoo.model_dicts = zoo
    enums = types.ModuleType("robustbench.model_zoo.enums")
    enums.BenchmarkDataset, enums.ThreatModel = BenchmarkDataset, ThreatModel
    data = types.ModuleType("robustbench.data")
    data.get_preprocessing = lambda ds, threat, name, pre: T.Compose(
        [T.CenterCrop(288), T.ToTensor()]
        if name == "Wong2020Fast"
        else [T.Resize(256), T.CenterCrop(224), T.ToTensor()]
    )
    utils = types.ModuleType("robustbench.utils")

    def offline(*a, **k):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    utils.load_model = offline
    for name, mod in {
        "robustbench": pkg,
        "robustbench.model_zoo": model_zoo,
        "robustbench.model_zoo.enums": enums,
        "robustbench.data": data,
        "robustbench.utils": utils,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)


def test_installed_package_checks_names_and_offline_weights_fail_clearly(
    fake_robustbench, tmp_path, monkeypatch
):
    from robustbench_vit.models.loading import load_model

    with pytest.raises(UnknownNameError, match="did you mean Salman2020Do_R50"):
        resolve_spec("robustbench:Linf/Salman2020Do_R5O")
    monkeypatch.setenv("RBVIT_ROBUSTBENCH_DIR", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="cannot fetch RobustBench weights .* Offline"):
        load_model("robustbench:Linf/Salman2020Do_R50", device="cpu")
    random = load_model("robustbench:Linf/Salman2020Do_R50", device="cpu", pretrained=False)
    assert random.data_config.resize_size == (256, 256) and random.weights == "random"
    assert random(torch.rand(2, 3, 224, 224)).shape == (2, 1000)
    with pytest.raises(ConfigError, match="without resizing"):
        load_model("robustbench:Linf/Wong2020Fast", device="cpu", pretrained=False)


def test_missing_package_is_a_one_line_install_hint(monkeypatch):
    from robustbench_vit.models.loading import load_model

    monkeypatch.setitem(sys.modules, "robustbench", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "robustbench.model_zoo", None)
    with pytest.raises(ConfigError, match=r"pip install 'robustbench_vit\[robustbench\]'"):
        load_model("robustbench:Linf/Salman2020Do_R50", device="cpu")


def test_a_checkpoint_downloaded_again_is_another_model_before_it_is_loaded(tmp_path, monkeypatch):
    """A sweep identifies a cell before building its model: RobustBench's downloaded checkpoint files (as its
    loader lays them out: ``<dataset>/<threat>/<id>.pt``, an ensemble's ``<id>.pt_m<i>.pt``) are named by
    their content, so a corrected release downloaded over the old file is another cell, not a skipped one."""
    from robustbench_vit.models.identity import weights_identity

    monkeypatch.setenv("RBVIT_ROBUSTBENCH_DIR", str(tmp_path))
    single = resolve_spec("robustbench:Linf/Salman2020Do_R50")
    ensemble = resolve_spec("robustbench:cifar10/Linf/Chen2020Adversarial")
    tag = f"robustbench:{single.arch}"
    assert weights_identity(single, cache_dir=tmp_path / "c") == tag  # nothing downloaded yet
    folder = tmp_path / "imagenet" / "Linf"
    folder.mkdir(parents=True)
    (folder / "Salman2020Do_R50.pt").write_bytes(b"first release")
    first = weights_identity(single, cache_dir=tmp_path / "c")
    assert first.startswith(f"{tag} sha256:")
    (folder / "Salman2020Do_R50.pt").write_bytes(b"later release")
    assert weights_identity(single, cache_dir=tmp_path / "c") not in (first, tag)

    members = tmp_path / "cifar10" / "Linf"
    members.mkdir(parents=True)
    for i in range(3):
        (members / f"Chen2020Adversarial.pt_m{i}.pt").write_bytes(f"member {i}".encode())
    whole = weights_identity(ensemble, cache_dir=tmp_path / "c")
    (members / "Chen2020Adversarial.pt_m2.pt").write_bytes(b"member 2, retrained")
    assert weights_identity(ensemble, cache_dir=tmp_path / "c") != whole
