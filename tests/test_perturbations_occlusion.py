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


# IPViT's evaluate.py, restated independently: images as rows of patches ('b c (h p1) (w p2) -> b (h w)
# (p1 p2 c)'), one draw of patch indices for the whole batch, rows zeroed (PatchDrop) or reordered
# (shuffle) in [0, 1] pixels before normalisation; the offset variant multiplies by the mask moved 8 px.
def _to_rows(img: torch.Tensor, grid: int) -> torch.Tensor:
    b, c, h, w = img.shape
    p1, p2 = h // grid, w // grid
    return img.reshape(b, c, grid, p1, grid, p2).permute(0, 2, 4, 3, 5, 1).reshape(b, grid * grid, -1)


def _from_rows(rows: torch.Tensor, grid: int, shape: torch.Size) -> torch.Tensor:
    b, c, h, w = shape
    p1, p2 = h // grid, w // grid
    return rows.reshape(b, grid, grid, p1, p2, c).permute(0, 5, 1, 3, 2, 4).reshape(shape)


def _batch_order(seed: int, n: int) -> torch.Tensor:
    """The order rbvit draws one batch's cells in (the same generator and call): the reference's draw."""
    return torch.rand(1, n, generator=gen(seed)).argsort(dim=1)[0]


@pytest.mark.parametrize("step", range(10))
@pytest.mark.parametrize("offset", [False, True])
def test_random_drop_is_ipvits_loop(step, offset):
    drop = step * 196 // 10  # the reference's counts: 0, 19, 39, ..., 176 of 196 patches
    row = _batch_order(3, 196)[:drop]
    if offset:
        mask = _to_rows(torch.ones_like(X), 14)
        mask[:, row, :] = 0.0
        mask = _from_rows(mask, 14, X.shape)
        moved = torch.ones_like(mask)
        moved[:, :, 8:, 8:] = mask[:, :, :-8, :-8]
        reference = moved * X
    else:
        rows = _to_rows(X.clone(), 14)
        rows[:, row, :] = 0.0
        reference = _from_rows(rows, 14, X.shape)
    ours = random_patch_drop(X, fraction=step / 10, grid=14, offset=offset, generator=gen(3))
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("grid", [2, 4, 8, 14, 16])
def test_shuffle_is_ipvits_loop(grid):
    row = _batch_order(5, grid * grid)
    reference = _from_rows(_to_rows(X, grid)[:, row, :], grid, X.shape)
    assert torch.equal(patch_shuffle(X, grid=grid, generator=gen(5)), reference)


@pytest.mark.parametrize("lam", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_salient_and_background_drop_are_ipvits_dino_loop(lam):
    """IPViT's ``--dino`` branch restated: the class token's attention to the 196 patches sorted, normalised,
    the patches whose ascending cumulative mass exceeds ``1 - lambda`` kept, put back in patch order, scaled
    to pixels by nearest interpolation; foreground drop multiplies by ``1 - mask``, background by ``mask``."""
    attn = torch.rand(4, 196, generator=gen(7)) ** 3  # peaked, like attention
    val, idx = torch.sort(attn)
    val = val / torch.sum(val, dim=1, keepdim=True)
    th_attn = torch.cumsum(val, dim=1) > (1 - lam)
    idx2 = torch.argsort(idx)
    for b in range(th_attn.shape[0]):
        th_attn[b] = th_attn[b][idx2[b]]
    th_attn = th_attn.reshape(-1, 14, 14).float()
    th_attn = torch.nn.functional.interpolate(th_attn.unsqueeze(1), scale_factor=16, mode="nearest")
    sal = attn.view(4, 14, 14)
    assert torch.equal(saliency_patch_drop(X, sal, mass=lam, salient=True), X * (1 - th_attn))
    assert torch.equal(saliency_patch_drop(X, sal, mass=lam, salient=False), X * th_attn)
