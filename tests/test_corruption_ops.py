"""Building blocks of the torch corruption backend against the library calls they replace (scipy,
skimage, OpenCV, PIL), including border modes: that is where re-implementations drift."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from robustbench_vit.perturbations.corruptions import spatter
from robustbench_vit.perturbations.corruptions._ops import (
    box_matrix,
    clipped_zoom,
    fft_correlate,
    gaussian_filter,
    motion_blur,
    pil_box_resize,
)
from robustbench_vit.perturbations.corruptions.digital import remap_bilinear
from robustbench_vit.perturbations.corruptions.noise_blur import glass_permutations


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Three 64x80 uint8 layers like spatter's: smoothed noise, thresholded (edges, flat zero areas)."""
    rng = np.random.default_rng(0)
    out = []
    for sigma in (1.0, 2.0, 3.0):
        layer = ndimage.gaussian_filter(rng.normal(0.65, 0.3, (64, 80)), sigma, mode="nearest")
        layer[layer < 0.66] = 0
        out.append((layer * 255).astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize(
    ("mode", "scipy_mode"), [("nearest", "nearest"), ("symmetric", "reflect"), ("reflect101", "mirror")]
)
@pytest.mark.parametrize("sigma", [0.7, 2.24, (1.5, 3.0)])
def test_gaussian_filter_matches_scipy(mode, scipy_mode, sigma):
    a = np.random.default_rng(1).random((2, 40, 50))
    ours = gaussian_filter(torch.from_numpy(a), sigma, mode=mode, truncate=3).numpy()
    ref = np.stack([ndimage.gaussian_filter(x, sigma, mode=scipy_mode, truncate=3) for x in a])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_fft_correlate_matches_cv2_filter2d_with_per_image_kernels():
    rng = np.random.default_rng(2)
    img = rng.random((2, 1, 30, 40)).astype(np.float32)
    k = rng.random((2, 7, 7)).astype(np.float32)
    ours = fft_correlate(torch.from_numpy(img), torch.from_numpy(k), mode="reflect101").numpy()
    for b in range(2):
        np.testing.assert_allclose(ours[b, 0], cv2.filter2D(img[b, 0], -1, k[b]), atol=1e-5)


def test_clipped_zoom_matches_scipy_zoom_order1():
    a = np.random.default_rng(3).random((1, 1, 31, 31))
    for z in (1.11, 2.5, 4.5):
        ch = int(np.ceil(31 / z))
        top = (31 - ch) // 2
        ref = ndimage.zoom(a[0, 0, top : top + ch, top : top + ch], z, order=1)
        np.testing.assert_allclose(clipped_zoom(torch.from_numpy(a), z)[0, 0].numpy(), ref, atol=1e-9)


def test_motion_blur_matches_the_reference_loop():
    from imagecorruptions.corruptions import _motion_blur

    img = np.random.default_rng(4).integers(0, 256, (48, 56, 3)).astype(np.uint8)
    for radius, sigma, angle in ((10, 3, 17.0), (15, 8, -44.0), (20, 15, -120.0), (30, 5, 90.0)):
        ref = _motion_blur(img, radius=radius, sigma=sigma, angle=angle)
        ours = motion_blur(torch.from_numpy(img).permute(2, 0, 1)[None].double(), radius, sigma, [angle])
        np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), ref, atol=1e-6)


def test_canny_matches_opencv(blobs):
    ours = spatter.canny(torch.from_numpy(blobs).double())
    for b in range(len(blobs)):
        ref = cv2.Canny(blobs[b], 50, 150) > 0
        assert ref.any() and np.array_equal(ours[b].numpy(), ref), b


def test_chamfer_distance_matches_opencv(blobs):
    edges = np.stack([cv2.Canny(b, 50, 150) for b in blobs])
    ours = spatter.chamfer_distance(torch.from_numpy(edges > 0)).numpy()
    for b in range(len(blobs)):
        ref = cv2.distanceTransform(255 - edges[b], cv2.DIST_L2, 5)
        np.testing.assert_allclose(np.minimum(ours[b], 20), np.minimum(ref, 20), atol=1e-4)


@pytest.mark.parametrize("density", [0.0, 0.0005, 0.01, 0.2])
def test_relaxed_chamfer_distance_equals_the_raster_passes(blobs, density):
    """The GPU formulation (parallel steps, capped) gives exactly the raster passes' capped distances,
    on spatter's edges and on random sparse seeds (long distances, borders), and cv2's within its
    fixed-point rounding."""
    edges = torch.from_numpy(np.stack([cv2.Canny(b, 50, 150) for b in blobs]) > 0)
    seeds = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(int(density * 1e4))) < density
    for zero in (edges, seeds):
        for cap in (20.0, 7.5):
            relaxed = spatter.chamfer_distance_relaxed(zero, cap)
            assert torch.equal(relaxed, spatter.chamfer_distance(zero).clamp(max=cap))
    for b in range(len(blobs)):
        ref = cv2.distanceTransform(255 - edges[b].numpy().astype(np.uint8) * 255, cv2.DIST_L2, 5)
        np.testing.assert_allclose(
            spatter.chamfer_distance_relaxed(edges[b : b + 1], 20)[0].numpy(), np.minimum(ref, 20), atol=1e-4
        )


def test_equalize_hist_and_box_blur_match_opencv(blobs):
    ours = spatter.equalize_hist(torch.from_numpy(blobs).float()).numpy()
    for b in range(len(blobs)):
        np.testing.assert_array_equal(ours[b], cv2.equalizeHist(blobs[b]))
    flat = np.full((1, 8, 8), 7, np.uint8)  # a constant image maps to itself, as cv2 does
    np.testing.assert_array_equal(
        spatter.equalize_hist(torch.from_numpy(flat).float()).numpy(), cv2.equalizeHist(flat[0])[None]
    )
    box = torch.round(spatter.box3(torch.from_numpy(blobs).double()) / 9).numpy()
    for b in range(len(blobs)):
        np.testing.assert_array_equal(box[b], cv2.blur(blobs[b], (3, 3)))


@pytest.mark.parametrize(("n_in", "n_out"), [(224, 134), (224, 56), (32, 30), (30, 32), (27, 32)])
def test_box_matrix_matches_pil_box(n_in, n_out):
    a = np.random.default_rng(5).integers(0, 256, (n_in, n_in)).astype(np.uint8)
    ref = np.asarray(Image.fromarray(a).resize((n_out, n_out), Image.BOX)).astype(float)
    m = box_matrix(n_in, n_out).double()
    ours = torch.round(m @ torch.from_numpy(a).double() @ m.T).numpy()
    assert np.abs(ours - ref).max() <= 1  # one float pass: within a level
    rgb = np.random.default_rng(6).integers(0, 256, (n_in, n_in + 7, 3)).astype(np.uint8)
    for size in ((n_out, n_out), (n_out + 3, max(1, n_out - 5))):
        ref = np.asarray(Image.fromarray(rgb).resize(size, Image.BOX))
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        exact = (pil_box_resize(x, (size[1], size[0]))[0].permute(1, 2, 0) * 255).round().byte().numpy()
        assert np.array_equal(exact, ref), size  # Pillow's two fixed-point passes: pixel-exact


def test_remap_bilinear_matches_map_coordinates_reflect():
    rng = np.random.default_rng(6)
    img = rng.random((20, 24, 3))
    rows = np.arange(20)[:, None] + rng.normal(0, 4, (20, 24))  # shifts well past the borders
    cols = np.arange(24)[None, :] + rng.normal(0, 4, (20, 24))
    ref = np.stack(
        [ndimage.map_coordinates(img[..., ch], (rows, cols), order=1, mode="reflect") for ch in range(3)]
    )
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    ours = remap_bilinear(x, torch.from_numpy(rows)[None], torch.from_numpy(cols)[None])[0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_glass_permutation_reproduces_the_reference_loop():
    """The reference's compiled loop on an index image gives exactly our index map for the same seed."""
    from imagecorruptions.corruptions import _shuffle_pixels_njit_glass_blur

    h, w = 40, 36
    idx = np.arange(h * w, dtype=np.int64).reshape(h, w)
    img = np.stack([idx % 256, idx // 256, np.zeros_like(idx)], axis=-1).astype(np.uint8)
    for delta, iters, seed in ((1, 2, 0), (2, 1, 7), (3, 2, 2**31 - 2), (4, 2, 123)):  # 3: rejections
        ref = _shuffle_pixels_njit_glass_blur(h, w, img.copy(), (0.0, delta, iters), seed)
        ref_idx = ref[..., 0].astype(np.int64) + 256 * ref[..., 1].astype(np.int64)
        ours = glass_permutations(h, w, delta, iters, [seed])[0].numpy()
        np.testing.assert_array_equal(ours, ref_idx.reshape(-1))
        assert not np.array_equal(ours, np.arange(h * w))


def test_a_frost_photograph_other_than_the_installed_one_is_refused(tmp_path, monkeypatch):
    """The photographs define frost: one replaced or damaged in the package (same name, same package version)
    is refused in one line naming it, never blended in as frost."""
    import shutil

    from robustbench_vit.errors import DataError
    from robustbench_vit.perturbations.corruptions import weather

    copy = tmp_path / "frost"
    shutil.copytree(weather._frost_dir(), copy)
    monkeypatch.setattr(weather, "_frost_dir", lambda: copy)
    weather._frost_photos.cache_clear()
    try:
        assert len(weather._frost_photos()) == 6  # the installed bytes: read
        data = bytearray((copy / "frost4.jpg").read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / "frost4.jpg").write_bytes(bytes(data))
        weather._frost_photos.cache_clear()
        with pytest.raises(DataError, match="frost4.jpg is not the file its package installed"):
            weather._frost_photos()
    finally:
        weather._frost_photos.cache_clear()
