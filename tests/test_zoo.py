import csv

import pytest
import timm

from robustbench_vit.models.zoo import MODELS
from tests.helpers import REFERENCE

REQUIRED_FAMILIES = [
    "vit_",
    "deit_",
    "swin_",
    "cait_",
    "pit_",
    "convit_",
    "coat_",
    "twins_",
    "levit_",
    "xcit_",
    "beit_",
    "mixer_",
    "resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "bit_",
    "convnext_",
    "efficientnet_",
    "regnet",
]


def test_zoo_covers_the_papers_families():
    names = MODELS.names()
    for prefix in REQUIRED_FAMILIES:
        assert any(n.startswith(prefix) for n in names), prefix
    assert any(n.endswith("_distilled") for n in names)
    assert {MODELS.get(n).family for n in names} == {"vit", "cnn", "hybrid", "mlp"}


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).source == "timm"])
def test_every_timm_entry_resolves_offline_without_building(name, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("the zoo check must not build models")

    monkeypatch.setattr(timm, "create_model", no_build)
    spec = MODELS.get(name)
    cfg = timm.get_pretrained_cfg(spec.arch, allow_unregistered=False)
    assert cfg is not None, spec.arch
    assert cfg.hf_hub_id or cfg.url or cfg.file, f"{spec.arch} has no weights location"
    assert spec.arch in timm.list_pretrained(spec.arch)


def test_preprocessing_is_derived_from_timm():
    from robustbench_vit.data.preprocessing import from_timm

    dc = from_timm(MODELS.get("vit_b16").arch)
    cfg = timm.get_pretrained_cfg(MODELS.get("vit_b16").arch)
    assert dc.crop_pct == cfg.crop_pct and dc.interpolation == cfg.interpolation
    assert dc.mean == tuple(cfg.mean) and dc.std == tuple(cfg.std) and dc.input_size == tuple(cfg.input_size)
    assert from_timm(MODELS.get("resnet50").arch).resize_size == (256, 256)


@pytest.mark.skipif(
    not (REFERENCE / "timm-results-imagenet.csv").is_file(), reason="timm results table absent"
)
def test_param_counts_match_timm_results_table():
    table = {
        r["model"]: float(r["param_count"].replace(",", ""))
        for r in csv.DictReader(open(REFERENCE / "timm-results-imagenet.csv"))
    }
    checked = 0
    for _, spec in MODELS.items():
        if spec.source == "timm" and spec.arch in table:
            assert spec.params_m == pytest.approx(table[spec.arch], abs=0.01), spec.name
            checked += 1
    assert checked >= 40
