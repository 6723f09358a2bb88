"""Invariants of PatchDrop and patch shuffling (Naseer et al. 2021)."""

import pytest
import torch

from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations import patch_shuffle, random_patch_drop, saliency_patch_drop
from robustbench_vit.perturbations.occlusion import drop_count, mass_mask, random_cell_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


X = torch.rand(4, 3, 224, 224) * 0.9 + 0.05  # no exact zeros in the clean image


def dropped_cells(y, cell=16):
    zero = (y == 0).all(1)  # (B, H, W)
    return zero.view(y.shape[0], 224 // cell, cell, 224 // cell, cell).all(4).all(2).sum((1, 2))


def test_paper_drop_counts():
    assert [drop_count(f / 10, 196) for f in range(10)] == [0, 19, 39, 58, 78, 98, 117, 137, 156, 176]


def test_zero_drop_is_identity():
    assert random_patch_drop(X, fraction=0.0, generator=gen()) is X


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("mask_mode", ["batch", "image"])
def test_exactly_k_cells_dropped(fraction, mask_mode):
    y = random_patch_drop(X, fraction=fraction, mask_mode=mask_mode, generator=gen())
    k = drop_count(fraction, 196)
    assert dropped_cells(y).tolist() == [k] * 4
    kept = (y != 0).all(1)
    assert torch.equal(y[kept.unsqueeze(1).expand_as(y)], X[kept.unsqueeze(1).expand_as(X)])


def test_batch_mode_shares_mask_image_mode_does_not():
    yb = random_patch_drop(X, fraction=0.5, generator=gen())
    assert all(torch.equal((yb[0] == 0).all(0), (yb[i] == 0).all(0)) for i in range(4))
    yi = random_patch_drop(X, fraction=0.5, mask_mode="image", generator=gen())
    assert not torch.equal((yi[0] == 0).all(0), (yi[1] == 0).all(0))


def test_same_seed_same_output_and_range():
    for fill in ("zero", "mean", "noise"):
        a = random_patch_drop(X, fraction=0.3, fill=fill, generator=gen(3))
        b = random_patch_drop(X, fraction=0.3, fill=fill, generator=gen(3))
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(
        random_patch_drop(X, fraction=0.3, generator=gen(1)),
        random_patch_drop(X, fraction=0.3, generator=gen(2)),
    )


def test_grids_pixel_level_and_errors():
    y = random_patch_drop(X, fraction=0.25, grid=8, generator=gen())
    assert dropped_cells(y, cell=28).tolist() == [16] * 4
    y = random_patch_drop(X, fraction=0.5, grid=224, generator=gen())
    assert ((y == 0).all(1).sum((1, 2)) == 224 * 224 // 2).all()
    with pytest.raises(ConfigError, match="does not divide"):
        random_patch_drop(X, fraction=0.5, grid=15, generator=gen())


def test_offset_grid_shifts_by_half_a_cell():
    mask = torch.zeros(1, 14, 14, dtype=torch.bool)
    mask[0, 0, 0] = True
    from robustbench_vit.perturbations.occlusion import drop_cells

    y = drop_cells(X[:1], mask, offset=True)
    zero = (y[0] == 0).all(0)
    assert zero[8:24, 8:24].all() and zero.sum() == 256 and not zero[:8].any()


def test_masks_identical_across_devices_for_a_seed():
    m1 = random_cell_mask(4, (14, 14), 50, generator=gen(7))
    m2 = random_cell_mask(4, (14, 14), 50, generator=gen(7))
    assert torch.equal(m1, m2) and m1.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    a = random_patch_drop(X, fraction=0.5, generator=gen(5))
    b = random_patch_drop(X.cuda(), fraction=0.5, generator=gen(5)).cpu()
    assert torch.equal(a, b)
    s1 = patch_shuffle(X, grid=4, generator=gen(5))
    s2 = patch_shuffle(X.cuda(), grid=4, generator=gen(5)).cpu()
    assert torch.equal(s1, s2)


def test_mass_mask_smallest_top_set():
    sal = torch.tensor([[[0.5, 0.3], [0.15, 0.05]]])
    assert mass_mask(sal, 0.5).tolist() == [[[True, False], [False, False]]]
    assert mass_mask(sal, 0.8).tolist() == [[[True, True], [False, False]]]
    assert mass_mask(sal, 1.0).all()


def test_salient_and_non_salient_are_complements():
    sal = torch.rand(4, 14, 14)
    fg = saliency_patch_drop(X, sal, mass=0.5, salient=True)
    bg = saliency_patch_drop(X, sal, mass=0.5, salient=False)
    assert torch.allclose(fg + bg, X)


def test_shuffle_grid_one_is_identity():
    assert torch.equal(patch_shuffle(X, grid=1, generator=gen()), X)


@pytest.mark.parametrize("grid", [2, (2, 4), 4, (4, 8), 14, 16])
def test_shuffle_preserves_the_multiset_of_patches(grid):
    y = patch_shuffle(X, grid=grid, generator=gen())
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    ph, pw = 224 // gh, 224 // gw

    def patches(t):
        p = t.reshape(4, 3, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(4, gh * gw, -1)
        return p.sort(dim=1).values  # sort patches by their first pixel values, lexicographic enough

    assert not torch.equal(y, X)
    for b in range(4):
        a = {tuple(r.tolist()[:8]) for r in patches(X)[b]}
        c = {tuple(r.tolist()[:8]) for r in patches(y)[b]}
        assert a == c
    assert torch.equal(y, patch_shuffle(X, grid=grid, generator=gen()))


def test_shuffle_rejects_non_dividing_grid_or_crops():
    with pytest.raises(ConfigError, match="does not divide"):
        patch_shuffle(X, grid=3, generator=gen())
    y = patch_shuffle(X, grid=3, crop=True, generator=gen())
    assert torch.equal(y[:, :, 222:, :], X[:, :, 222:, :]) and y.shape == X.shape
