"""Every suite runs on one zoo model of each architecture family (random weights, a handful of images):
a suite that reads a model's inside (layers, attention, class token, input size) must work, or say in one
line why it does not apply, whatever the architecture. ``imagenet_a``/``_r``/``_o``/``_c`` and
``shape_bias`` read their own datasets and depend on the model only through its ImageNet-1k label space;
their own tests run them."""

from __future__ import annotations

import pytest

import robustbench_vit as rbvit
from robustbench_vit.suites import SUITES
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet

#: a ViT, a hierarchical ViT, a hybrid, an MLP, and CNNs of timm, torchvision and the offline PyPI package
FAMILY_MODELS = ["deit_t", "swin_t", "levit_128s", "mixer_b16", "efficientnet_lite0", "tv_resnet50_v2"]

#: the cheapest parameters of each suite that still run its whole path
SMALL = {
    "clean": {},
    "occlusion": {"fractions": "0.5"},
    "patch_shuffle": {"grids": "2"},
    "fourier_filter": {"kinds": "low", "radius_fractions": "0.25"},
    "fourier_heatmap": {"stride": 56, "bases_per_pass": 32},
    "pgd": {"epsilons": "1/255", "steps": 1, "restarts": 1},
    "autoattack": {"aa_version": "custom", "attacks": "apgd-ce", "n_iter": 1, "n_restarts": 1},
    "transfer": {"attack": "fgsm", "source_pretrained": False},
    "corruptions": {"corruptions": "gaussian_noise", "severities": "1"},
    "imagenet_p": {"perturbations": "gaussian_noise"},
    "representations": {},
}
OWN_DATASETS = {"imagenet_a", "imagenet_r", "imagenet_o", "imagenet_c", "shape_bias"}


def test_every_suite_is_covered():
    builtin = {n for n, cls in SUITES.items() if cls.__module__.startswith("robustbench_vit.")}
    assert set(SMALL) | OWN_DATASETS == builtin  # suites a test registers (test_extending) are not rbvit's


@needs_imagenet
@pytest.mark.slow
@pytest.mark.parametrize("model", FAMILY_MODELS)
def test_every_suite_runs_on_every_family(tmp_path, model):
    from robustbench_vit.suites import make_suite

    suites = [make_suite(n, {**p, "source": model} if n == "transfer" else p) for n, p in SMALL.items()]
    df = rbvit.evaluate(
        model,
        suites,
        data=str(IMAGENET_SAMPLES),
        limit=4,
        batch_size=4,
        pretrained=False,
        out=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    assert set(df.suite) == set(SMALL), sorted(set(SMALL) - set(df.suite))
    rep = df[df.suite == "representations"]
    assert (rep.metric == "cka").any()  # every architecture has layers to compare
    attention = model in ("deit_t",)
    assert (rep.metric == "attention_distance").any() == attention
