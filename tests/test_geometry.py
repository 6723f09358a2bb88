"""The eval geometry (resize + centre crop) against its reference, timm's eval transform on PIL images.

On the CPU the cached pixels are the reference's, value for value, for every interpolation, crop
percentage (below and above 1), crop mode and a non-square input; the GPU data path's tensor geometry
is held within two levels of them, with ``nearest`` sampling Pillow's pixel centres.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.data.decode import apply_geometry, load_image, pil_nearest_indices, tensor_geometry
from robustbench_vit.data.preprocessing import DataConfig
from tests.helpers import IMAGENET_SAMPLES, needs_imagenet

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def timm_eval_geometry(dc: DataConfig):
    """timm's eval transform for ``dc`` (``create_transform``), without ToTensor / Normalize: PIL in, PIL out."""
    import timm.data

    tf = timm.data.create_transform(
        input_size=dc.input_size,
        crop_pct=dc.crop_pct,
        crop_mode=dc.crop_mode,
        interpolation=dc.interpolation,
        mean=dc.mean,
        std=dc.std,
    )
    steps = [t for t in tf.transforms if type(t).__name__ not in ("ToTensor", "MaybeToTensor", "Normalize")]
    assert len(steps) == 2, steps  # a resize and a crop: nothing else to compare
    return lambda im: steps[1](steps[0](im))


def _natural(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Image-like content (smooth noise with edges): resampling filters differ most on such values."""
    small = rng.integers(0, 256, (max(h // 6, 2), max(w // 6, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).copy()
    img[h // 3 : h // 2, :, 0] = 255  # a hard edge
    return img


SHAPES = [(375, 500), (500, 333), (180, 190), (96, 300), (256, 256), (1000, 37)]
CONFIGS = [
    DataConfig((3, 224, 224), crop, interp, MEAN, STD, crop_mode=mode)
    for interp in ("bilinear", "bicubic", "nearest", "lanczos")
    for crop, mode in (
        (0.875, "center"),
        (0.9, "center"),
        (1.0, "center"),
        (1.15, "center"),
        (0.95, "squash"),
    )
] + [
    DataConfig((3, 160, 224), 0.9, "bicubic", MEAN, STD),  # non-square: timm's ResizeKeepRatio
    DataConfig((3, 384, 384), 1.0, "bicubic", MEAN, STD),  # upsampling
]


@pytest.mark.parametrize("dc", CONFIGS, ids=lambda dc: dc.describe())
def test_cpu_geometry_is_timms_eval_transform_pixel_for_pixel(dc):
    ref = timm_eval_geometry(dc)
    rng = np.random.default_rng(0)
    for h, w in SHAPES:
        img = _natural(rng, h, w)
        got = apply_geometry(torch.from_numpy(img).permute(2, 0, 1).contiguous(), dc)
        want = np.asarray(ref(Image.fromarray(img)))
        assert got.dtype == torch.uint8 and got.shape == (3, *dc.image_size)
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), want, err_msg=f"{h}x{w}")


@needs_imagenet
@pytest.mark.parametrize(
    "arch",
    ["resnet50.tv_in1k", "vit_base_patch16_224.augreg_in1k", "resnet50.a1_in1k", "deit_small_patch16_224"],
)
def test_decoded_samples_are_timms_pixels(arch):
    """The real samples through the whole CPU path (decode + geometry) against timm's eval transform of
    each model's own pretrained config, on PIL's decoding of the file: equal."""
    from robustbench_vit.data.preprocessing import from_timm

    dc = from_timm(arch)
    ref = timm_eval_geometry(dc)
    for f in sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::50]:
        with Image.open(f) as im:
            want = np.asarray(ref(im.convert("RGB")))
        np.testing.assert_array_equal(load_image(f, dc).permute(1, 2, 0).numpy(), want, err_msg=str(f))


def test_a_batch_is_its_images_one_by_one():
    dc = DataConfig((3, 64, 64), 0.875, "bicubic", MEAN, STD)
    batch = torch.from_numpy(np.stack([_natural(np.random.default_rng(i), 90, 120) for i in range(3)]))
    batch = batch.permute(0, 3, 1, 2).contiguous()
    assert torch.equal(apply_geometry(batch, dc), torch.stack([apply_geometry(b, dc) for b in batch]))
    assert apply_geometry(batch[:0], dc).shape == (0, 3, 64, 64)
    assert apply_geometry(batch[:0, :, :32, :32], dc).shape == (0, 3, 64, 64)  # smaller than the input size


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest", "lanczos"])
@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 1.15])
def test_tensor_geometry_stays_within_two_levels_of_pillows(interp, crop_pct):
    """The GPU path's geometry, run here on CPU tensors. torchvision's antialiased resize: at least 95% of
    each image's values equal to Pillow's (99% overall), none more than two levels off. ``nearest``
    samples Pillow's pixels exactly (plain tensor ``nearest`` is half a pixel off, a shifted image, and
    ``nearest-exact`` picks the other pixel at 2-6% of the boundaries)."""
    dc = DataConfig((3, 224, 224), crop_pct, interp, MEAN, STD)
    rng = np.random.default_rng(1)
    equal = total = 0
    for h, w in [*SHAPES, (33, 47), (1200, 1600)]:
        img = torch.from_numpy(_natural(rng, h, w)).permute(2, 0, 1).contiguous()
        diff = (tensor_geometry(img, dc).int() - apply_geometry(img, dc).int()).abs()
        if interp == "nearest":
            assert int(diff.max()) == 0, (h, w)
        assert int(diff.max()) <= 2 and (diff == 0).float().mean() > 0.95, (h, w, int(diff.max()))
        equal, total = equal + int((diff == 0).sum()), total + diff.numel()
    assert equal / total > 0.99, equal / total


def test_pillows_nearest_sampling_is_a_running_sum():
    """Pillow's NEAREST resize along one axis, restated: its affine loop's source pixel per output pixel."""
    for n_in, n_out in ((256, 248), (375, 286), (37, 224), (500, 7), (10, 10)):
        row = np.arange(n_in, dtype=np.int32).reshape(1, n_in)  # mode "I": any index
        want = np.asarray(Image.fromarray(row).resize((n_out, 1), Image.NEAREST))[0]
        np.testing.assert_array_equal(
            pil_nearest_indices(n_in, n_out).numpy(), want, err_msg=f"{n_in}->{n_out}"
        )


@needs_imagenet
def test_release_geometry_is_pils_exactly(tmp_path):
    """make_imagenet_c.py's ``Resize(256)`` + ``CenterCrop(224)`` on PIL images, on full-size images (the
    samples upscaled 1.87x, saved losslessly): the release table's decoding equals it."""
    import torchvision.transforms as T

    dc = DataConfig((3, 224, 224), 224 / 256, "bilinear", (0.5,) * 3, (0.5,) * 3)
    reference = T.Compose([T.Resize(256), T.CenterCrop(224)])
    for k, f in enumerate(sorted(IMAGENET_SAMPLES.rglob("*.JPEG"))[::100]):
        with Image.open(f) as im:
            w, h = im.size
            im.convert("RGB").resize((int(w * 1.87), int(h * 1.87)), Image.BICUBIC).save(
                tmp_path / f"{k}.png"
            )
        with Image.open(tmp_path / f"{k}.png") as im:
            want = np.asarray(reference(im.convert("RGB")))
        np.testing.assert_array_equal(load_image(tmp_path / f"{k}.png", dc).permute(1, 2, 0).numpy(), want)
