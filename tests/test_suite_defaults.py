"""Every suite's defaults work for every zoo model's input size (pretrained configs only, no model built)."""

from __future__ import annotations

import pytest

from robustbench_vit.models.zoo import MODELS
from robustbench_vit.perturbations.grid import cell_size
from robustbench_vit.suites import SUITES, make_suite
from robustbench_vit.suites._common import auto_grid_side, parse_grid


def _zoo_sizes() -> set[tuple[int, int]]:
    from robustbench_vit.data.preprocessing import from_timm

    sizes = {(160, 160), (32, 32)}  # a 160 px model (issue report) and CIFAR
    for name in MODELS.names():
        spec = MODELS.get(name)
        if spec.source == "timm":
            sizes.add(from_timm(spec.arch).image_size)
        else:
            sizes.add((224, 224))  # torchvision resnet50 v2 and efficientnet-lite0 take 224 px
    return sizes


SIZES = sorted(_zoo_sizes())


def test_zoo_covers_several_resolutions():
    assert {(224, 224), (448, 448), (600, 600)} <= set(SIZES)


@pytest.mark.parametrize("size", SIZES)
def test_occlusion_default_grid_divides_every_zoo_input(size):
    g = parse_grid(make_suite("occlusion").grid, size)
    ch, cw = cell_size(*size, g)
    assert 8 <= ch <= 20 or size == (32, 32)
    if size == (224, 224):
        assert g == (14, 14)  # the paper's setting: 16 px cells


@pytest.mark.parametrize("size", SIZES)
def test_patch_shuffle_default_grids_divide_every_zoo_input(size):
    for spec in make_suite("patch_shuffle").grids:
        cell_size(*size, parse_grid(spec, size))


@pytest.mark.parametrize("size", SIZES)
def test_fourier_and_pgd_defaults_scale_with_the_input(size):
    from robustbench_vit.suites.fourier import default_eps, default_radius
    from robustbench_vit.suites.pgd import default_epsilons

    assert 0 < default_radius(size) <= min(size) // 2 - 1
    assert default_eps(size) > 0 and default_epsilons("linf", size) and default_epsilons("l2", size)


def test_auto_grid_side():
    assert [auto_grid_side(s) for s in (224, 448, 160, 600, 32)] == [14, 28, 10, 40, 2]


def test_every_suite_builds_with_defaults():
    needs = {"transfer": {"source": "timm:test_vit"}}
    for name in SUITES.names():
        make_suite(name, needs.get(name, {}))
