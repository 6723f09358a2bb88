"""``table=imagenet_c_release``: make_imagenet_c.py (hendrycks/robustness), the script that produced the
released ImageNet-C files, restated with the same library calls on 224 px images; and mCE only where
it is comparable with AlexNet's errors on those files."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import skimage as sk
import torch
from PIL import Image
from scipy import ndimage

from robustbench_vit.perturbations.corruptions import IMAGENET, TABLES, corrupt, jpeg_store
from robustbench_vit.perturbations.corruptions.tables import IMAGENET_C_RELEASE
from tests.helpers import IMAGENET_SAMPLES

S = 224


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """4 real ImageNet samples (resize 256 / crop 224) when the shared data is there, else smooth noise."""
    if IMAGENET_SAMPLES.is_dir():
        from robustbench_vit.data.decode import load_image
        from robustbench_vit.data.preprocessing import DataConfig

        dc = DataConfig((3, S, S), 224 / 256, "bilinear", (0.5,) * 3, (0.5,) * 3)
        files = sorted(IMAGENET_SAMPLES.rglob("*.JPEG"))[::250][:4]
        return torch.stack([load_image(f, dc) for f in files]).float() / 255
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(4, 3, 14, 14, generator=g), size=S, mode="bilinear")


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _as_tensor(imgs: list[np.ndarray]) -> torch.Tensor:
    return (
        torch.from_numpy(np.stack([np.uint8(np.clip(i, 0, 255)) for i in imgs])).permute(0, 3, 1, 2).float()
        / 255
    )


def _clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    """make_imagenet_c's clipped_zoom: centre crop of ceil(h / z), scipy order-1 zoom, centre trim."""
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    out = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def test_release_table_differs_from_imagecorruptions_only_in_elastic():
    assert TABLES["imagenet_c_release"] is IMAGENET_C_RELEASE
    assert {k for k in IMAGENET if IMAGENET[k] != IMAGENET_C_RELEASE[k]} == {"elastic_transform"}
    assert IMAGENET_C_RELEASE["elastic_transform"][0] == pytest.approx((488, 170.8, 24.4))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_pixelate_and_zoom_blur_match_make_imagenet_c(images, severity):
    c = IMAGENET_C_RELEASE["pixelate"][severity - 1]
    ref = []
    for img in _u8(images):
        small = Image.fromarray(img).resize((int(S * c), int(S * c)), Image.BOX)
        ref.append(np.asarray(small.resize((S, S), Image.BOX)))
    diff = (corrupt(images, "pixelate", severity, table="imagenet_c_release") - _as_tensor(ref)).abs() * 255
    assert diff.max() < 1e-3  # Pillow's two fixed-point passes with a uint8 rounding between: pixel-exact
    zooms = np.arange(*IMAGENET_C_RELEASE["zoom_blur"][severity - 1])
    ref = []
    for img in _u8(images):
        x = (img / 255.0).astype(np.float32)
        out = sum(_clipped_zoom(x, z) for z in zooms)
        ref.append(np.clip((x + out) / (len(zooms) + 1), 0, 1) * 255)
    diff = (corrupt(images, "zoom_blur", severity, table="imagenet_c_release") - _as_tensor(ref)).abs() * 255
    assert diff.max() <= 1 + 1e-3 and diff.mean() < 0.35, (diff.max().item(), diff.mean().item())


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_elastic_matches_make_imagenet_c_given_draws(images, severity):
    """make_imagenet_c keeps the random affine step (control points at the centre +- a third of the
    side moved by up to c[2] px), then a displacement field smoothed with sigma c[1], scaled by c[0]."""
    from robustbench_vit.perturbations.corruptions.digital import elastic_cifar_with

    c = IMAGENET_C_RELEASE["elastic_transform"][severity - 1]
    rng = np.random.default_rng(severity)
    jitter = rng.uniform(-c[2], c[2], (len(images), 3, 2)).astype(np.float32)
    ux, uy = rng.uniform(-1, 1, (2, len(images), S, S))
    centre, third = np.float32(S) // 2, S // 3
    pts1 = np.float32([[centre + third] * 2, [centre + third, centre - third], [centre - third] * 2])
    refs = []
    for i, img in enumerate(_u8(images)):
        x = img.astype(np.float32) / 255
        m = cv2.getAffineTransform(pts1, pts1 + jitter[i])
        x = cv2.warpAffine(x, m, (S, S), borderMode=cv2.BORDER_REFLECT_101)
        dx = (sk.filters.gaussian(ux[i], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
        dy = (sk.filters.gaussian(uy[i], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
        yy, xx = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
        refs.append(
            np.clip(
                np.stack(
                    [
                        ndimage.map_coordinates(x[..., d], (yy + dy, xx + dx), order=1, mode="reflect")
                        for d in range(3)
                    ],
                    -1,
                ),
                0,
                1,
            )
            * 255
        )
    ours = elastic_cifar_with(images, c, torch.from_numpy(jitter), torch.from_numpy(ux), torch.from_numpy(uy))
    diff = (torch.floor(ours.clamp(0, 1) * 255) / 255 - _as_tensor(refs)).abs() * 255
    assert diff.mean() < 0.5 and torch.quantile(diff.flatten(), 0.99) <= 3, (
        diff.mean().item(),
        diff.max().item(),
    )


def test_frost_uses_unscaled_crops_of_the_first_five_photos(images):
    from robustbench_vit.perturbations.corruptions.weather import _frost_photos, frost_with

    c = IMAGENET_C_RELEASE["frost"][2]
    picks = [(0, 10, 20), (2, 0, 0), (4, 50, 3), (1, 7, 99)]
    ours = frost_with(images, c, picks, style="imagenet_c_release")
    refs = []
    for img, (i, top, left) in zip(_u8(images), picks):
        photo = _frost_photos()[i][top : top + S, left : left + S][..., [2, 1, 0]]
        refs.append(np.clip(c[0] * img.astype(np.float64) + c[1] * photo, 0, 255))
    diff = (torch.floor(ours.clamp(0, 1) * 255 + 1e-4) / 255 - _as_tensor(refs)).abs() * 255
    assert diff.max() <= 1 + 1e-3


def test_frost_draws_only_the_first_five_photos(images, monkeypatch):
    """randint(5) in make_imagenet_c: photo 6 is never drawn."""
    from robustbench_vit.perturbations.corruptions import weather

    seen: list[int] = []
    monkeypatch.setattr(
        weather, "frost_with", lambda x, c, picks, style: (seen.extend(p[0] for p in picks), x)[1]
    )
    batch = images[:1].expand(60, -1, -1, -1)
    weather.frost(
        batch, IMAGENET_C_RELEASE["frost"][0], torch.Generator().manual_seed(0), style="imagenet_c_release"
    )
    assert set(seen) == {0, 1, 2, 3, 4}


def test_jpeg_store_is_pil_quality_85(images):
    ref = []
    for img in _u8(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, quality=85, optimize=True, format="JPEG")
        ref.append(np.asarray(Image.open(buf)))
    assert torch.equal(jpeg_store(images, 85), _as_tensor(ref))


def test_suite_decodes_as_make_imagenet_c_then_maps_to_the_model_geometry():
    from robustbench_vit.data.preprocessing import DataConfig
    from robustbench_vit.suites import make_suite
    from robustbench_vit.suites.corruptions import _as_released_file_to_model

    class _M:
        data_config = DataConfig((3, 384, 384), 1.0, "bicubic", (0.5,) * 3, (0.5,) * 3)

    suite = make_suite("corruptions")
    assert (
        suite.resolved_table((384, 384)) == "imagenet_c_release"
        and suite.resolved_table((32, 32)) == "cifar10"
    )
    assert make_suite("corruptions", {"backend": "imagecorruptions"}).resolved_table((224, 224)) == "imagenet"
    dc = suite.data_config(_M())  # type: ignore[arg-type]
    assert dc.image_size == (224, 224) and dc.resize_size == (256, 256) and dc.interpolation == "bilinear"
    x = torch.rand(2, 3, 224, 224)
    out = _as_released_file_to_model(x, _M.data_config)
    assert out.shape == (2, 3, 384, 384) and 0 <= out.min() and out.max() <= 1
    same = _as_released_file_to_model(x, DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3))
    assert torch.equal(same, jpeg_store(x, 85))


def _rows(table: str | None, severities=(1, 2, 3, 4, 5)) -> list:
    """Typed (condition, error) results of every benchmark corruption at ``severities``."""
    from robustbench_vit.metrics.accumulators import MetricValue
    from robustbench_vit.metrics.mce import BENCHMARK_CORRUPTIONS
    from robustbench_vit.suites.base import Condition

    rows = []
    for i, c in enumerate(BENCHMARK_CORRUPTIONS):
        for s in severities:
            p = {"corruption": c, "severity": s, **({"param_table": table} if table else {})}
            rows.append(
                (Condition(f"{c}/{s}", float(s), p), MetricValue("error", 0.3 + 0.01 * i + 0.02 * s, 50))
            )
    return rows


@pytest.mark.parametrize(
    "table,comparable", [(None, True), ("imagenet_c_release", True), ("imagenet", False), ("cifar10", False)]
)
def test_mce_only_for_tables_comparable_with_the_files(table, comparable):
    from robustbench_vit.suites.corruption_summary import corruption_summary

    out = corruption_summary(_rows(table))
    metrics = {mv.metric for _, mv in out}
    assert ("mce" in metrics) == comparable and ("ce" in metrics) == comparable
    assert {"mean_corruption_accuracy", "ce_unnormalised"} <= metrics
    assert all(c.params["param_table"] == (table or "imagenet_c_files") for c, _ in out)


def test_corruption_figure_never_normalises_incomparable_or_partial_errors():
    import pandas as pd

    from robustbench_vit.results.figures.plots import _comparable_complete_errors

    def frame(results, model="m"):
        return pd.DataFrame([{**c.params, "value": mv.value, "model": model} for c, mv in results])

    assert _comparable_complete_errors(frame(_rows("cifar10"))).empty
    assert _comparable_complete_errors(frame(_rows("imagenet"))).empty
    assert _comparable_complete_errors(frame(_rows("imagenet_c_release", severities=(3,)))).empty
    assert _comparable_complete_errors(frame(_rows("imagenet_c_release"))).shape == (15, 1)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_release_snow_floors_the_layer_before_the_blur_and_takes_imagemagicks_8_bits(images, severity):
    """make_imagenet_c.py restated: the thresholded layer is stored as an 8-bit image (astype(np.uint8): the
    floor), ImageMagick blurs it and returns 8 bits (``floor(round(65535 v) / 257)`` of the exact blur); the
    layer is added as is and rotated. Our motion blur stands in for ImageMagick's here; tests/test_imagemagick.py
    checks the two are equal, where ImageMagick is installed."""
    from robustbench_vit.perturbations.corruptions import weather
    from robustbench_vit.perturbations.corruptions._ops import motion_blur

    c = IMAGENET_C_RELEASE["snow"][severity - 1]
    rng = np.random.default_rng(severity)
    noise = rng.normal(size=(len(images), S, S), loc=c[0], scale=c[1])
    angles = list(rng.uniform(-135, -45, len(images)))
    ours = weather.snow_with(
        images, c, torch.from_numpy(noise), angles, trim="centre", quantize="imagemagick"
    )
    for i, img in enumerate(_u8(images)):
        x = img / 255.0
        layer = _clipped_zoom(noise[i][..., None], c[2])[..., 0]
        layer[layer < c[3]] = 0
        stored = np.clip(layer, 0, 1) * 255
        stored = stored.astype(np.uint8)  # the PNG handed to ImageMagick
        blurred = motion_blur(torch.from_numpy(stored / 255.0)[None, None], c[4], c[5], [angles[i]])[
            0, 0
        ].numpy()
        layer = np.floor(np.round(blurred * 65535) / 257) / 255  # ImageMagick's 8-bit result
        gray = cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY).reshape(S, S, 1)
        x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
        want = np.clip(x + layer[..., None] + np.rot90(layer, k=2)[..., None], 0, 1)
        got = ours[i].clamp(0, 1).permute(1, 2, 0).numpy()
        assert np.abs(got - want).max() * 255 < 0.01, (severity, i)


def test_the_release_table_quantises_snow_as_imagemagick_and_imagecorruptions_rounds(images, monkeypatch):
    from robustbench_vit.perturbations.corruptions import weather

    seen = []
    real = weather.snow_with
    monkeypatch.setattr(weather, "snow_with", lambda *a, **k: seen.append(a[-1]) or real(*a, **k))
    g = torch.Generator().manual_seed(0)
    corrupt(images[:1], "snow", 2, table="imagenet_c_release", generator=g)
    corrupt(images[:1], "snow", 2, table="imagenet", generator=g)
    assert seen == ["imagemagick", "round"]


@pytest.mark.parametrize("name", ["brightness", "saturate"])
@pytest.mark.parametrize("table", ["imagenet_c_release", "imagenet"])
def test_hsv_corruptions_equal_the_skimage_round_trip_exactly(images, name, table):
    """brightness and saturate as make_imagenet_c / imagecorruptions write them: ``np.array(x) / 255.``,
    skimage's rgb2hsv, the channel change, hsv2rgb, ``np.uint8(np.clip(x, 0, 1) * 255)``: every value equal
    (about 96% of the values are exact integers before the floor, so the arithmetic order decides)."""
    for severity in range(1, 6):
        c = TABLES[table][name][severity - 1]
        ref = []
        for img in _u8(images):
            hsv = sk.color.rgb2hsv(np.array(img) / 255.0)
            if name == "brightness":
                hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
            else:
                hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
            ref.append(np.uint8(np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255))
        ours = corrupt(images, name, severity, table=table)
        assert np.array_equal(_u8(ours), np.stack(ref)), (
            name,
            severity,
            int((_u8(ours) != np.stack(ref)).sum()),
        )


def test_hsv_round_trip_handles_grey_ties_and_saturated_pixels():
    """Every tie of the maximum (grey, two equal channels), black and white, through the same skimage calls."""
    from robustbench_vit.perturbations.corruptions.digital import brightness, saturate

    levels = np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)
    x = torch.from_numpy(grid).permute(2, 0, 1)[None].float() / 255
    for fn, c, ch in [(brightness, 0.3, 2), (saturate, (5, 0.1), 1), (saturate, (0.1, 0), 1)]:
        hsv = sk.color.rgb2hsv(grid / 255.0)
        hsv[..., ch] = (
            np.clip(hsv[..., ch] + c, 0, 1) if ch == 2 else np.clip(hsv[..., ch] * c[0] + c[1], 0, 1)
        )
        ref = np.uint8(np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255)
        assert np.array_equal(_u8(fn(x, c))[0], ref)


@pytest.mark.parametrize("table", ["imagenet_c_release", "cifar10"])
def test_motion_blur_keeps_imagemagicks_8_bits(images, table):
    """The make_*_c tables' motion_blur is ImageMagick's 8-bit output, ``floor(round(65535 v) / 257)`` of the
    blur at the drawn angles (the floor every corruption ends with keeps each of its 256 levels);
    tests/test_imagemagick.py compares with ImageMagick itself."""
    from robustbench_vit.perturbations.corruptions._ops import quantize_imagemagick
    from robustbench_vit.perturbations.corruptions.noise_blur import motion_blur_at

    c = TABLES[table]["motion_blur"][2]
    angles = (
        torch.rand(len(images), generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 90 - 45
    )
    got = corrupt(images, "motion_blur", 3, table=table, generator=torch.Generator().manual_seed(3))
    want = quantize_imagemagick(motion_blur_at(images, c, angles.tolist()))
    assert torch.equal(got, want)
    exact = motion_blur_at(images, c, angles.tolist()).clamp(0, 1) * 255
    assert not torch.equal(torch.round(want * 255), torch.floor(exact))  # a plain floor is another image
