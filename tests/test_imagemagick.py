"""make_imagenet_c.py, make_cifar_c.py and make_imagenet_p.py blur motion_blur and snow with ImageMagick
(Wand's ``MagickMotionBlurImage`` on a PNG of the image or of the snow layer). Restated here with ImageMagick
itself, given the same angles: our motion blur kernel equals ImageMagick's, and ImageMagick 6 Q16's 8-bit
output is ``floor(round(65535 v) / 257)`` of the exact blur (``quantize_imagemagick``; a plain floor is one
level low in 0.4-0.9% of the values), so the release and CIFAR tables' motion_blur and snow layer, and
ImageNet-P's frames, equal the scripts' pixel for pixel, through the JPEG q85 storage too. Skipped where
Wand or the MagickWand library is absent (``.ci/run`` installs ImageMagick where it can: ``apt-get install
imagemagick``; Wand comes with the ``dev`` extra)."""

from __future__ import annotations

import ctypes
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_vit.perturbations.corruptions import CIFAR10, corrupt, jpeg_store
from robustbench_vit.perturbations.corruptions._ops import motion_blur, quantize_floor, quantize_imagemagick
from robustbench_vit.perturbations.corruptions.noise_blur import motion_blur_at
from robustbench_vit.perturbations.corruptions.tables import IMAGENET_C_RELEASE
from tests.helpers import IMAGENET_SAMPLES, imagenet_p_snow_reference

wand_image = pytest.importorskip("wand.image", reason="Wand and ImageMagick's MagickWand library")
wand_api = pytest.importorskip("wand.api")


def _imagemagick_motion_blur(png: bytes, radius: float, sigma: float, angle: float) -> np.ndarray:
    """make_imagenet_c's ``MotionImage(blob=png).motion_blur(...)`` then ``cv2.imdecode(..., UNCHANGED)``,
    colour images from BGR to RGB and a gray result (ImageMagick writes gray PNGs for gray content) to
    three channels, as the script does; a gray layer (snow's) stays 2-D."""
    library = wand_api.library
    library.MagickMotionBlurImage.argtypes = (
        ctypes.c_void_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_double,
    )
    with wand_image.Image(blob=png) as img:
        library.MagickMotionBlurImage(img.wand, radius, sigma, angle)
        blob = img.make_blob()
    out = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    colour = Image.open(io.BytesIO(png)).mode == "RGB"
    if not colour:
        return out
    return out[..., [2, 1, 0]] if out.ndim == 3 else np.stack([out] * 3, axis=-1)


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """(N, 224, 224, 3) uint8: shared ImageNet samples resized 256 / cropped 224, else smooth noise."""
    if IMAGENET_SAMPLES.is_dir():
        from robustbench_vit.data.decode import load_image
        from robustbench_vit.data.preprocessing import DataConfig

        dc = DataConfig((3, 224, 224), 224 / 256, "bilinear", (0.5,) * 3, (0.5,) * 3)
        files = sorted(IMAGENET_SAMPLES.rglob("*.JPEG"))[::125][:6]
        return np.stack([load_image(f, dc).permute(1, 2, 0).numpy() for f in files])
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(6, 3, 14, 14, generator=g), size=224, mode="bilinear")
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    return float((diff == 0).mean()), int(diff.max())


def _corrupted(x: torch.Tensor, severity: int, table: str, seed: int) -> tuple[torch.Tensor, list[float]]:
    """The suite's motion_blur and the angles it drew (U(-45, 45) from the corruption's generator)."""
    angles = torch.rand(len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 90 - 45
    out = corrupt(x, "motion_blur", severity, table=table, generator=torch.Generator().manual_seed(seed))
    return out, angles.tolist()


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("table", ["imagenet_c_release", "cifar10"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_motion_blur_is_imagemagicks_pixel_for_pixel(images, table, severity):
    """RGB images (224 px for the ImageNet table, 32 px crops for CIFAR's): the suite's corruption equals
    ImageMagick's blur at the angles it drew (all but float32's boundary cases, about 2e-5 of the values);
    a plain floor of the blur is one level low in 0.4-0.9% of them."""
    c = (IMAGENET_C_RELEASE if table == "imagenet_c_release" else CIFAR10)["motion_blur"][severity - 1]
    imgs = images if table == "imagenet_c_release" else np.ascontiguousarray(images[:, 96:128, 96:128])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    ours, angles = _corrupted(x, severity, table, seed=severity)
    floored = _u8(quantize_floor(motion_blur_at(x, c, angles)))
    theirs = np.stack([_imagemagick_motion_blur(_png(img), c[0], c[1], a) for img, a in zip(imgs, angles)])
    equal, worst = _agreement(_u8(ours), theirs)
    # float32 FFT sums against ImageMagick's doubles: a value within 1e-6 of a rounding boundary may differ
    assert equal > 1 - 1e-4 and worst <= 1, (equal, worst)
    assert _agreement(floored, theirs)[0] < 0.999  # the 16-bit rounding matters


@pytest.mark.parametrize("table", ["imagenet_c_release", "cifar10"])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_the_snow_layers_blur_is_imagemagicks_pixel_for_pixel(table, severity):
    """The snow layer as the scripts hand it to ImageMagick: a thresholded 8-bit gray PNG, angles from
    U(-135, -45); ImageMagick's 8-bit result is our float64 blur quantised as ImageMagick quantises."""
    c = (IMAGENET_C_RELEASE if table == "imagenet_c_release" else CIFAR10)["snow"][severity - 1]
    size = 224 if table == "imagenet_c_release" else 32
    rng = np.random.default_rng(severity)
    for _ in range(4):
        layer = rng.normal(size=(size, size), loc=c[0], scale=c[1])
        layer[layer < c[3]] = 0
        stored = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
        angle = float(rng.uniform(-135, -45))
        blurred = motion_blur(torch.from_numpy(stored / 255.0)[None, None], c[4], c[5], [angle])[0, 0]
        ours = (quantize_imagemagick(blurred) * 255).round().byte().numpy()
        assert np.array_equal(ours, _imagemagick_motion_blur(_png(stored), c[4], c[5], angle)), severity


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_release_motion_blur_equals_the_scripts_jpeg_files(images, severity):
    """make_imagenet_c.py's motion_blur (PNG -> ImageMagick -> cv2, BGR to RGB, ``np.uint8``), stored as
    the released files are (PIL JPEG q85, optimize), against the suite's pipeline at the same angles:
    the same JPEG pixels but where float32's boundary cases move a level."""
    c = IMAGENET_C_RELEASE["motion_blur"][severity - 1]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    ours, angles = _corrupted(x, severity, "imagenet_c_release", seed=10 + severity)
    script = []
    for img, angle in zip(images, angles):
        blurred = np.uint8(np.clip(_imagemagick_motion_blur(_png(img), c[0], c[1], angle), 0, 255))
        buf = io.BytesIO()
        Image.fromarray(blurred).save(buf, "JPEG", quality=85, optimize=True)
        script.append(np.asarray(Image.open(buf).convert("RGB")))
    diff = np.abs(_u8(jpeg_store(ours)).astype(int) - np.stack(script).astype(int))
    assert diff.mean() < 1e-3, diff.mean()


def test_imagenet_p_motion_blur_frames_are_imagemagicks(images):
    """make_imagenet_p.py saves each motion_blur frame as ImageMagick returns it (radius 10, sigma 3, angle
    4 (i - 30)): the generated frames equal it given the same 224 px crop."""
    from robustbench_vit.perturbations import sequences as seq

    crops = images[:2]
    canvas = torch.zeros(len(crops), 3, seq.CANVAS, seq.CANVAS)
    canvas[:, :, :224, :224] = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    ext = torch.tensor([[0.0, 0.0, 224.0, 224.0]] * len(crops), dtype=torch.float64)
    frames = seq.generate("motion_blur", canvas, ext, torch.Generator().manual_seed(0))
    for i in (0, 10, 30):
        theirs = np.stack([_imagemagick_motion_blur(_png(c), 10, 3, (i - 30) * 4) for c in crops])
        equal, worst = _agreement(_u8(frames[i]), theirs)
        assert equal > 1 - 1e-4 and worst <= 1, (i, equal, worst)


def test_imagenet_p_snow_frames_take_imagemagicks_layer(images):
    """make_imagenet_p.py's snow: the 8-bit layer blurred by ImageMagick (radius 14, sigma 4, angle 4i - 150)
    and read back as it is, added with its rotation to the brightened crop, floored to 8 bits."""
    from robustbench_vit.perturbations import sequences as seq

    x = images[0] / 255.0
    noise = np.random.default_rng(0).normal(size=(224, 224), loc=0.05, scale=0.3)
    ours = seq.snow_sequence(
        torch.from_numpy(x).permute(2, 0, 1)[None].float(), torch.from_numpy(noise)[None, None]
    )
    stored, base = imagenet_p_snow_reference(x, noise)
    layer = _png(stored)
    for i in (0, 15, 30):
        s = _imagemagick_motion_blur(layer, 14, 4, i * 4 - 150)[..., None] / 255.0
        ref = np.uint8(np.clip(base + s + np.rot90(s, k=2), 0, 1) * 255)
        equal, worst = _agreement(_u8(ours[i])[0], ref)
        assert equal > 0.999 and worst <= 1, (i, equal, worst)
