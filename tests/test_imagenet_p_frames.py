"""imagenet_p's generated sequences against the reference generator's operations (PIL, OpenCV,
imagecorruptions' restatement of ImageMagick's motion blur, quantised as ImageMagick writes 8 bits:
``floor(round(257 b) / 257)`` of a blur ``b`` in levels), restated with the same draws. tests/test_imagemagick.py
compares the blurred frames with ImageMagick itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from robustbench_vit.perturbations import sequences as seq
from tests.helpers import IMAGENET_SAMPLES, imagenet_p_snow_reference, needs_imagenet


# --- generated sequences against the reference's operations -----------------------------------------
def _source(wnid: str = "n01440764") -> Image.Image:
    """A shared sample resized to 256 on its short side; ``black-border``: the tench with its own black
    frame (40 px left and right, 24 px top), which detecting the image from the padding would cut off."""
    if wnid == "black-border":
        img = np.asarray(_source()).copy()
        img[:24], img[:, :40], img[:, -40:] = 0, 0, 0
        return Image.fromarray(img)
    f = next((IMAGENET_SAMPLES / wnid).iterdir())
    return T.Resize(256)(Image.open(f).convert("RGB"))


#: the tench (4:3), a 2.8:1 strainer wider than the canvas, a 1:2.4 cobra, a black-framed image
SOURCES = ["n01440764", "n04332243", "n01748264", "black-border"]


def _canvas(img: Image.Image) -> torch.Tensor:
    t = TF.pil_to_tensor(img)
    return TF.center_crop(t, [seq.CANVAS, seq.CANVAS]).float().div(255)[None]


def _ext(img: Image.Image) -> torch.Tensor:
    return seq.canvas_extent([(img.height, img.width)])


def _close(ours: torch.Tensor, ref: np.ndarray, mean_levels: float, p99_levels: float) -> None:
    """Frames agree within ``mean_levels`` uint8 levels on average and ``p99_levels`` at the 99th percentile."""
    a = ours.permute(1, 2, 0).numpy() * 255
    d = np.abs(a - ref.astype(np.float64))
    assert d.mean() <= mean_levels and np.percentile(d, 99) <= p99_levels, (d.mean(), np.percentile(d, 99))


@needs_imagenet
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    "name", ["translate", "rotate", "scale", "zoom_blur", "tilt", "brightness", "motion_blur"]
)
def test_generated_frames_follow_the_reference_generator(name, source):
    """Every frame against the reference's operations on the whole short-side-256 image, also for images
    wider than the canvas (``scale``'s first frames show their sides) and images with a black border."""
    import skimage.color as skcolor
    from imagecorruptions.corruptions import _motion_blur

    img = _source(source)
    frames = seq.generate(name, _canvas(img), _ext(img), torch.Generator().manual_seed(0))[:, 0]
    crop = T.CenterCrop(224)
    x = np.asarray(img)
    picks = (0, 3, 7, 19, 30) if name != "translate" else (0, 5, 20, 40)
    avg = T.ToTensor()(crop(img))
    for i in range(1, 31 if name == "zoom_blur" else 0):  # zoom blur accumulates every frame
        z = crop(TF.affine(img, 0, [0, 0], 1 + 0.004 * i, [0.0], interpolation=T.InterpolationMode.BILINEAR))
        avg += T.ToTensor()(z)
        if i in picks:
            ref = np.asarray(T.ToPILImage()(avg / (i + 1)))
            _close(frames[i], ref, 0.6, 3)
    for i in picks:
        if name == "translate":
            ref = np.asarray(crop(TF.affine(img, 0, [i - 20, 0], 1, [0.0])))
        elif name == "rotate":
            ref = np.asarray(
                crop(TF.affine(img, i - 15, [0, 0], 1.0, [0.0], interpolation=T.InterpolationMode.BILINEAR))
            )
        elif name == "scale":
            s = (i * 2.5 + 40) / 100.0
            ref = np.asarray(
                crop(TF.affine(img, 0, [0, 0], s, [0.0], interpolation=T.InterpolationMode.BILINEAR))
            )
        elif name == "tilt":
            h, w = x.shape[:2]
            mat = seq.tilt_matrix(h, w, i - 15).numpy()
            ref = np.asarray(crop(Image.fromarray(cv2.warpPerspective(x, mat, (w, h)))))
        elif name == "brightness":
            hsv = skcolor.rgb2hsv(np.asarray(crop(img)) / 255.0)
            hsv[:, :, 2] = np.clip(hsv[:, :, 2] + (i - 15) * 2 / 100.0, 0, 1)
            ref = np.uint8(skcolor.hsv2rgb(hsv) * 255)
        elif name == "motion_blur":
            blurred = _motion_blur(np.asarray(crop(img)), radius=10, sigma=3, angle=(i - 30) * 4)
            ref = np.floor(np.round(np.clip(blurred, 0, 255) * 257) / 257)  # ImageMagick's 8 bits
        else:
            continue
        _close(frames[i], ref, 0.6, 3)


@needs_imagenet
def test_snow_frames_follow_the_reference_with_the_same_draws():
    from imagecorruptions.corruptions import _motion_blur

    img = T.CenterCrop(224)(_source())
    x = np.asarray(img) / 255.0
    noise = np.random.default_rng(0).normal(size=(224, 224), loc=0.05, scale=0.3)
    ours = seq.snow_sequence(
        torch.from_numpy(x).permute(2, 0, 1)[None].float(), torch.from_numpy(noise)[None, None]
    )
    # reference: clipped_zoom x3 (order 1, centre trim), threshold, 8-bit layer, blur, brighten, add
    layer, base = imagenet_p_snow_reference(x, noise)
    for i in (0, 15, 30):
        blurred = np.clip(_motion_blur(layer, 14, 4, i * 4 - 150), 0, 255)
        s = np.floor(np.round(blurred * 257) / 257)[..., None] / 255.0  # ImageMagick's 8 bits
        ref = np.uint8(np.clip(base + s + np.rot90(s, k=2), 0, 1) * 255)
        _close(ours[i][0], ref, 0.6, 3)


def test_noise_sequences_start_clean_and_have_the_reference_strength():
    g = torch.Generator().manual_seed(0)
    x = torch.full((2, 3, seq.CANVAS, seq.CANVAS), 0.5)
    full = torch.tensor([[0.0, 0.0, seq.CANVAS, seq.CANVAS]] * 2, dtype=torch.float64)
    for d, sigma in enumerate(seq.NOISE_LEVELS["gaussian_noise"], start=1):
        f = seq.generate("gaussian_noise", x, full, g, d)
        assert torch.equal(f[0], x[:, :, :224, :224]) and f.shape[0] == 31
        assert float((f[1:] - 0.5).std()) == pytest.approx(sigma, rel=0.05)
    for d, lam in enumerate(seq.NOISE_LEVELS["shot_noise"], start=1):
        f = seq.generate("shot_noise", x, full, g, d)
        assert float(f[1:].var()) == pytest.approx(0.5 / lam, rel=0.1)  # Poisson: variance = x / lambda


@needs_imagenet
@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise"])
def test_noise_frames_are_the_reference_formula_with_the_same_draws(name):
    """Frames 1..30 restated with numpy as make_imagenet_p.py writes them (``np.uint8`` of the clipped noisy
    image), fed the draws our generator makes: the device generator seeded from the batch generator."""
    from robustbench_vit.perturbations.corruptions._ops import dev_gen

    canvas = _canvas(_source())
    frames = seq.generate(name, canvas, _ext(_source()), torch.Generator().manual_seed(7), difficulty=2)[:, 0]
    x = frames[0]  # the clean 224 crop
    g = dev_gen(canvas, torch.Generator().manual_seed(7))
    level = seq.NOISE_LEVELS[name][1]
    xn = x.numpy().astype(np.float64)
    for i in range(1, 31):
        if name == "gaussian_noise":
            draw = torch.randn((1, *x.shape), generator=g)[0].numpy()
            ref = np.uint8(255 * np.clip(xn + level * draw, 0, 1))
        else:
            draw = torch.poisson(torch.from_numpy(xn)[None].float() * level, generator=g)[0].numpy()
            ref = np.uint8(255 * np.clip(draw / level, 0, 1))
        got = np.round(frames[i].numpy().astype(np.float64) * 255)
        assert np.abs(got - ref).max() <= 1, i  # float32 vs float64 at the truncation edge
        assert (got == ref).mean() > 0.999, i
