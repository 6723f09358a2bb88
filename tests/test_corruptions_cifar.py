"""CIFAR-10-C parameter tables (make_cifar_c.py of hendrycks/robustness) in the torch backend.

No installable package implements these tables, so the references below restate make_cifar_c's
formulas with the same library calls (skimage / PIL / OpenCV / scipy) on 32 px images.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import skimage as sk
import torch
from PIL import Image
from scipy import ndimage

from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.corruptions import ALL_CORRUPTIONS, CIFAR10, corrupt
from tests.helpers import CIFAR10_TEST, needs_cifar


@pytest.fixture(scope="module")
def cifar() -> torch.Tensor:
    """12 real CIFAR-10 test images when the shared data is there, else smooth synthetic ones."""
    if CIFAR10_TEST.is_dir():
        from robustbench_vit.data.registry import open_dataset

        _, ds = open_dataset(CIFAR10_TEST)
        return torch.stack([ds.read(i) for i in range(0, len(ds), len(ds) // 12)][:12]).float() / 255
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(12, 3, 8, 8, generator=g), size=32, mode="bilinear")


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _as_tensor(imgs: list[np.ndarray]) -> torch.Tensor:
    return (
        torch.from_numpy(np.stack([np.uint8(np.clip(i, 0, 255)) for i in imgs])).permute(0, 3, 1, 2).float()
        / 255
    )


def _make_cifar_c(name: str, img: np.ndarray, c) -> np.ndarray:  # noqa: ANN001
    """make_cifar_c's deterministic corruptions, restated (input uint8 HxWx3, output in 0..255)."""
    from imagecorruptions.corruptions import disk

    x = img / 255.0
    if name == "contrast":
        m = x.mean(axis=(0, 1), keepdims=True)
        return np.clip((x - m) * c + m, 0, 1) * 255
    if name in ("brightness", "saturate"):
        hsv = sk.color.rgb2hsv(x)
        if name == "brightness":
            hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        else:
            hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
        return np.clip(sk.color.hsv2rgb(hsv), 0, 1) * 255
    if name == "gaussian_blur":
        return np.clip(sk.filters.gaussian(x, sigma=c, channel_axis=-1), 0, 1) * 255
    if name == "defocus_blur":
        k = disk(radius=c[0], alias_blur=c[1])
        return np.clip(np.stack([cv2.filter2D(x[..., d], -1, k) for d in range(3)], -1), 0, 1) * 255
    if name == "jpeg_compression":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=c)
        return np.asarray(Image.open(buf))
    if name == "pixelate":
        small = Image.fromarray(img).resize((int(32 * c), int(32 * c)), Image.BOX)
        return np.asarray(small.resize((32, 32), Image.BOX))
    assert name == "zoom_blur"
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for z in np.arange(*c):
        ch = int(np.ceil(32 / z))
        top = (32 - ch) // 2
        zoomed = ndimage.zoom(x[top : top + ch, top : top + ch], (z, z, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        out += zoomed[trim : trim + 32, trim : trim + 32]
    return np.clip((x + out) / (len(np.arange(*c)) + 1), 0, 1) * 255


@pytest.mark.parametrize(
    "name",
    [
        "contrast",
        "brightness",
        "saturate",
        "gaussian_blur",
        "defocus_blur",
        "jpeg_compression",
        "pixelate",
        "zoom_blur",
    ],
)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_deterministic_cifar_tables_match_make_cifar_c(cifar, name, severity):
    c = CIFAR10[name][severity - 1]
    ref = _as_tensor([_make_cifar_c(name, img, c) for img in _u8(cifar)])
    ours = corrupt(cifar, name, severity, table="cifar10")
    diff = (ours - ref).abs() * 255
    if name == "pixelate":  # Pillow's BOX resampling restated pixel for pixel
        assert diff.max() < 1e-3, (severity, diff.max().item())
    assert diff.max() <= 1 + 1e-3 and diff.mean() < 0.35, (
        name,
        severity,
        diff.max().item(),
        diff.mean().item(),
    )


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar_elastic_matches_make_cifar_c_given_draws(cifar, severity):
    """Affine step (cv2.warpAffine interpolates with 1/32 px fixed-point weights, hence the tolerance)
    then the smoothed displacement field (scipy map_coordinates)."""
    from robustbench_vit.perturbations.corruptions.digital import elastic_cifar_with

    c = CIFAR10["elastic_transform"][severity - 1]
    rng = np.random.default_rng(severity)
    jitter = rng.uniform(-c[2], c[2], (len(cifar), 3, 2)).astype(np.float32)
    ux, uy = rng.uniform(-1, 1, (2, len(cifar), 32, 32))
    refs = []
    for i, img in enumerate(_u8(cifar)):
        x = img.astype(np.float32) / 255
        pts1 = np.float32([[26, 26], [26, 6], [6, 6]])
        m = cv2.getAffineTransform(pts1, pts1 + jitter[i])
        x = cv2.warpAffine(x, m, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
        dx = (sk.filters.gaussian(ux[i], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
        dy = (sk.filters.gaussian(uy[i], c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
        yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
        refs.append(
            np.stack(
                [
                    ndimage.map_coordinates(x[..., d], (yy + dy, xx + dx), order=1, mode="reflect")
                    for d in range(3)
                ],
                -1,
            )
            * 255
        )
    ours = elastic_cifar_with(cifar, c, torch.from_numpy(jitter), torch.from_numpy(ux), torch.from_numpy(uy))
    diff = (torch.floor(ours.clamp(0, 1) * 255) / 255 - _as_tensor(refs)).abs() * 255
    assert diff.mean() < 0.5 and torch.quantile(diff.flatten(), 0.99) <= 3, (
        diff.mean().item(),
        diff.max().item(),
    )


@pytest.mark.parametrize(
    ("name", "expected_std"),
    [("gaussian_noise", 0.10), ("shot_noise", (0.5 / 50) ** 0.5), ("speckle_noise", 0.5 * 0.2)],
)
def test_cifar_noise_levels(name, expected_std):
    x = torch.full((8, 3, 32, 32), 0.5)
    ours = corrupt(x, name, 5, generator=torch.Generator().manual_seed(0), table="cifar10")
    assert (ours - x).std().item() == pytest.approx(expected_std, rel=0.05)
    imp = corrupt(x, "impulse_noise", 5, generator=torch.Generator().manual_seed(0), table="cifar10")
    assert ((imp - x).abs() > 0.4).float().mean().item() == pytest.approx(0.07, rel=0.1)


def test_all_19_run_with_the_cifar_tables(cifar):
    for name in ALL_CORRUPTIONS:
        a = corrupt(cifar, name, 3, generator=torch.Generator().manual_seed(1), table="cifar10")
        b = corrupt(cifar, name, 3, generator=torch.Generator().manual_seed(1), table="cifar10")
        assert torch.equal(a, b) and a.shape == cifar.shape and 0 <= a.min() and a.max() <= 1, name
        assert not torch.equal(a, corrupt(cifar, name, 3, generator=torch.Generator().manual_seed(1))), name


def test_cifar_tables_are_milder_than_imagenet_tables_on_32px(cifar):
    """The point of the CIFAR tables: ImageNet's severities are far too strong for 32 px images."""
    for name in ("gaussian_noise", "defocus_blur", "pixelate", "jpeg_compression"):
        g = torch.Generator
        d_cifar = (
            (corrupt(cifar, name, 3, generator=g().manual_seed(0), table="cifar10") - cifar).abs().mean()
        )
        d_imnet = (
            (corrupt(cifar, name, 3, generator=g().manual_seed(0), table="imagenet") - cifar).abs().mean()
        )
        assert d_cifar < d_imnet, name


def test_cifar_frost_refuses_images_larger_than_its_photos():
    with pytest.raises(ConfigError, match="table=imagenet"):
        corrupt(torch.rand(1, 3, 96, 96), "frost", 1, table="cifar10")


def test_reference_backend_refuses_the_cifar_table():
    from robustbench_vit.suites.corruptions import Corruptions

    with pytest.raises(ConfigError, match="backend=torch"):
        Corruptions(backend="imagecorruptions", table="cifar10")


@needs_cifar
def test_corruptions_suite_picks_cifar_tables_for_32px_models(tmp_path, cifar_card):
    import robustbench_vit as rbvit
    from robustbench_vit.storage.reading import load_results

    rbvit.evaluate(
        str(cifar_card),
        "corruptions",
        data=str(CIFAR10_TEST),
        limit=16,
        out=str(tmp_path),
        suite_params={"corruptions": ("snow", "contrast"), "severities": (1, 5)},
    )
    df = load_results(tmp_path)
    cells = df[df.metric == "error"]
    assert len(cells) == 4 and set(cells.param_table) == {"cifar10"}
    assert dict(zip(cells.corruption, cells.validation, strict=True)) == {
        "snow": "formula",
        "contrast": "formula",
    }
    assert not {"mce", "ce", "relative_mce"} & set(df.metric), "AlexNet normalisers are ImageNet-C's"
