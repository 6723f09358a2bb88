"""Common corruptions: torch backend vs the imagecorruptions reference (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError
from robustbench_vit.perturbations.corruptions import (
    ALL_CORRUPTIONS,
    TORCH_CORRUPTIONS,
    corrupt,
    reference_corrupt,
)
from tests.helpers import IMAGENET_SAMPLES, needs_effnet, needs_imagenet

DETERMINISTIC = (
    "gaussian_blur",
    "defocus_blur",
    "zoom_blur",
    "contrast",
    "brightness",
    "saturate",
    "jpeg_compression",
    "pixelate",
)
STOCHASTIC = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


@pytest.fixture(scope="module")
def images():
    from robustbench_vit.data.decode import load_image

    dc = DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    files = sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::125]
    return torch.stack([load_image(f, dc) for f in files]).float() / 255


@needs_imagenet
@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_deterministic_match_reference_pixelwise(images, name, severity):
    ours = corrupt(images, name, severity)
    ref = reference_corrupt(images, name, severity, seed=0)
    diff = (ours - ref).abs() * 255
    assert diff.max() <= 1.0 + 1e-3 and diff.mean() < 0.6, (name, severity, diff.mean().item())


@needs_imagenet
@pytest.mark.parametrize("name", STOCHASTIC)
@pytest.mark.parametrize("severity", [1, 5])
def test_stochastic_match_reference_in_distribution(images, name, severity):
    ours = corrupt(images, name, severity, generator=torch.Generator().manual_seed(0))
    ref = reference_corrupt(images, name, severity, seed=0)
    s_ours, s_ref = (ours - images).std().item(), (ref - images).std().item()
    assert s_ours == pytest.approx(s_ref, rel=0.03)
    m_ours, m_ref = (ours - images).mean().item(), (ref - images).mean().item()
    assert abs(m_ours - m_ref) < 0.01


def _reference_draws(n: int, seed: int, draw):  # noqa: ANN001, ANN202
    """What the reference draws for image i after ``np.random.seed(seed + i)`` (see reference_corrupt)."""
    import numpy as np

    out = []
    for i in range(n):
        np.random.seed(seed + i)
        out.append(draw(np))
    return out


def _given_draws(name: str, severity: int, x: torch.Tensor) -> torch.Tensor:
    """Our torch implementation fed with the reference's own random draws."""
    import numpy as np

    from robustbench_vit.perturbations.corruptions import IMAGENET, digital, noise_blur, spatter, weather

    b, _, h, w = x.shape
    c = IMAGENET[name][severity - 1]
    if name == "motion_blur":
        return noise_blur.motion_blur_at(x, c, _reference_draws(b, 0, lambda r: r.random.uniform(-45, 45)))
    if name == "glass_blur":  # the reference seeds numba's generator with the seed it is given
        return noise_blur.glass_blur_with_seeds(x, c, list(range(b)))
    if name == "snow":
        d = _reference_draws(
            b, 0, lambda r: (r.random.normal(size=(h, w), loc=c[0], scale=c[1]), r.random.uniform(-135, -45))
        )
        return weather.snow_with(x, c, torch.from_numpy(np.stack([a for a, _ in d])), [t for _, t in d])
    if name == "fog":  # replay each image's uniform draws in the reference's order
        states = _reference_draws(b, 0, lambda r: r.random.get_state())

        def uniform(shape):  # noqa: ANN001, ANN202
            out = []
            for i in range(b):
                np.random.set_state(states[i])
                out.append(np.random.random_sample(shape))
                states[i] = np.random.get_state()
            return torch.from_numpy(np.stack(out))

        return weather.fog_with(x, c, uniform)
    if name == "frost":
        sizes = [t.shape[1:] for t in weather._frost_layers("imagenet", h, w, x.device)]

        def pick(r):  # noqa: ANN001, ANN202
            i = r.random.randint(6)
            return i, r.random.randint(0, sizes[i][0] - h), r.random.randint(0, sizes[i][1] - w)

        return weather.frost_with(x, c, _reference_draws(b, 0, pick))
    if name == "spatter":
        d = _reference_draws(b, 0, lambda r: r.random.normal(size=(h, w), loc=c[0], scale=c[1]))
        return spatter.spatter_with(x, c, torch.from_numpy(np.stack(d)))
    m = h * 0.005  # elastic_transform
    d = _reference_draws(
        b, 0, lambda r: (r.random.uniform(-m, m, size=(h, w)), r.random.uniform(-m, m, size=(h, w)))
    )
    ux, uy = (torch.from_numpy(np.stack([t[k] for t in d])) for k in (0, 1))
    return digital.elastic_with(x, c, (h * 0.01, w * 0.01), ux, uy)


@needs_imagenet
@pytest.mark.parametrize(
    "name", ["motion_blur", "glass_blur", "snow", "spatter", "elastic_transform", "frost", "fog"]
)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_random_corruptions_match_reference_pixelwise_given_its_draws(images, name, severity):
    """Fed the reference's random draws (angles, noise layers, displacement fields, glass-swap seed, frost crop),
    the torch implementation reproduces the reference to one uint8 level (glass_blur's order-dependent
    swap loop included: it is replayed exactly, not approximated)."""
    from robustbench_vit.perturbations.corruptions._ops import quantize_floor

    ours = quantize_floor(_given_draws(name, severity, images))
    ref = reference_corrupt(images, name, severity, seed=0)
    diff = (ours - ref).abs() * 255
    assert diff.max() <= 1.0 + 1e-3 and diff.mean() < 0.1, (
        name,
        severity,
        diff.max().item(),
        diff.mean().item(),
    )
    assert not torch.equal(ours, images)


@needs_imagenet
@pytest.mark.parametrize(
    "name", ["motion_blur", "glass_blur", "snow", "spatter", "elastic_transform", "frost"]
)
def test_random_corruptions_with_own_draws_match_reference_in_distribution(images, name):
    ours = corrupt(images, name, 3, generator=torch.Generator().manual_seed(3))
    ref = reference_corrupt(images, name, 3, seed=100)
    d_ours, d_ref = (ours - images).abs().mean().item(), (ref - images).abs().mean().item()
    assert d_ours == pytest.approx(d_ref, rel=0.2, abs=0.004), (d_ours, d_ref)


@needs_imagenet
@pytest.mark.parametrize("name", ["fog", "frost"])
def test_textured_corruptions_match_reference_in_distribution(name):
    """fog (plasma fractal) and frost (random crops of the reference's frost photos): over 125 images the
    mean and spread of the change match the reference (per image they differ: different random draws)."""
    from robustbench_vit.data.decode import load_image

    dc = DataConfig((3, 224, 224), 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    x = torch.stack([load_image(f, dc) for f in sorted(IMAGENET_SAMPLES.glob("*/*.JPEG"))[::8]]).float() / 255
    ours = corrupt(x, name, 3, generator=torch.Generator().manual_seed(1))
    ref = reference_corrupt(x, name, 3, seed=1)
    assert abs((ours - x).mean() - (ref - x).mean()) < 0.02
    assert (ours - x).std().item() == pytest.approx((ref - x).std().item(), rel=0.05)


def test_torch_backend_is_seeded_and_in_range():
    x = torch.rand(2, 3, 64, 64)
    for name in TORCH_CORRUPTIONS:
        a = corrupt(x, name, 3, generator=torch.Generator().manual_seed(1))
        b = corrupt(x, name, 3, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and a.shape == x.shape, name


def test_unknown_names_and_tables_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown corruption"):
        corrupt(torch.rand(1, 3, 64, 64), "fgo", 1)
    with pytest.raises(ConfigError, match="unknown parameter table"):
        corrupt(torch.rand(1, 3, 64, 64), "fog", 1, table="cifar100")
    with pytest.raises(ConfigError, match="severity"):
        corrupt(torch.rand(1, 3, 64, 64), "fog", 6)


def test_torch_backend_has_all_19():
    assert set(TORCH_CORRUPTIONS) == set(ALL_CORRUPTIONS) and len(ALL_CORRUPTIONS) == 19


@needs_imagenet
def test_all_19_run_with_the_reference_backend(images):
    x = images[:1]
    for name in ALL_CORRUPTIONS:
        out = reference_corrupt(x, name, 3, seed=0)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name
        assert not torch.equal(out, x), name


@needs_imagenet
def test_corruptions_suite_through_cli(tmp_path):
    import subprocess
    import sys

    from robustbench_vit.storage.reading import load_results

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_vit.cli.commands",
            "eval",
            "-m",
            "timm:test_resnet",
            "--random-weights",
            "-s",
            "corruptions",
            "-p",
            "corruptions=contrast,snow",
            "-p",
            "severities=1,2",
            "--data",
            str(IMAGENET_SAMPLES),
            "--limit",
            "8",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    df = load_results(tmp_path)
    cells = df[df.metric == "error"]
    # the default table at ImageNet size is make_imagenet_c's pipeline (comparable with the files)
    assert (
        len(cells) == 4
        and set(cells.backend) == {"torch"}
        and set(cells.param_table) == {"imagenet_c_release"}
    )
    assert set(cells.storage) == {"jpeg q85"} and set(
        cells.preprocessing_source.str.contains("make_imagenet_c")
    ) == {True}
    # both steps are named: the decoding the columns describe, and the files' way to the model's input
    assert set(cells.preprocessing) == {"resize 256 / crop 224 bilinear (center)"}
    assert all(
        s.endswith("then to the model: resize 160 / crop 160 bilinear (center)")
        for s in cells.preprocessing_source
    )
    assert set(cells[cells.corruption == "snow"].validation) == {"formula"}  # ImageMagick restated
    assert set(cells[cells.corruption == "contrast"].validation) == {"pixel"}


@pytest.mark.slow
@needs_imagenet
@needs_effnet
def test_torch_backend_accuracy_matches_reference_on_real_model(tmp_path):
    """All 19 corruptions at severity 3 on 100 real images: top-1 of efficientnet_lite0 agrees between
    backends within 5 points, or within 2.5 sigma of the paired sampling noise for the random ones
    (their draws differ between backends; sigma = sqrt(discordant images) / n)."""
    import robustbench_vit as rbvit
    from robustbench_vit.perturbations.corruptions import ALL_CORRUPTIONS
    from robustbench_vit.storage.reading import load_samples

    params = {"corruptions": ALL_CORRUPTIONS, "severities": (3,), "table": "imagenet"}
    correct = {}
    for backend in ("torch", "imagecorruptions"):
        out = tmp_path / backend
        rbvit.evaluate(
            "efficientnet_lite0",
            "corruptions",
            suite_params={**params, "backend": backend},
            data=str(IMAGENET_SAMPLES),
            limit=100,
            out=str(out),
            batch_size=100,
            save_samples=True,
        )
        s = load_samples(out)
        correct[backend] = s.set_index(["condition", "index"])["correct"].sort_index()
    ours, ref = correct["torch"], correct["imagecorruptions"]
    assert len(ours) == len(ref) == 19 * 100
    diff = (ours.astype(int) - ref.astype(int)).groupby(level=0).mean()
    discordant = (ours != ref).groupby(level=0).sum()
    allowed = np.maximum(0.05, 2.5 * np.sqrt(discordant) / 100) + 1e-9
    assert (diff.abs() <= allowed).all(), str(diff[diff.abs() > allowed].round(3).to_dict())


@pytest.mark.parametrize("name", ["impulse_noise", "glass_blur", "gaussian_noise", "fog"])
def test_reference_backend_is_reproducible(name):
    """impulse_noise and glass_blur use their own generator in the reference; the seed must reach it."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(reference_corrupt(x, name, 3, seed=5), reference_corrupt(x, name, 3, seed=5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("table", ["imagenet", "cifar10"])
def test_torch_backend_on_cuda_matches_cpu(table):
    """All 19 run on CUDA, stay on the device, and the deterministic ones (and the random ones fed the
    same draws) agree with the CPU result within one uint8 level."""
    from robustbench_vit.perturbations.corruptions import IMAGENET, noise_blur, spatter

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(
        torch.rand(4, 3, 16, 16, generator=g), size=224 if table == "imagenet" else 32, mode="bilinear"
    )
    xc = x.cuda()
    for name in ALL_CORRUPTIONS:
        out = corrupt(xc, name, 3, generator=torch.Generator().manual_seed(1), table=table)
        assert out.is_cuda and out.shape == x.shape and 0 <= out.min() and out.max() <= 1, name
        if name in DETERMINISTIC:
            cpu = corrupt(x, name, 3, table=table)
            assert ((out.cpu() - cpu).abs() * 255).max() <= 1 + 1e-3, name
    if table == "imagenet":
        c = IMAGENET["spatter"][0]
        noise = torch.randn(4, 224, 224, generator=g, dtype=torch.float64) * c[1] + c[0]
        a, b = spatter.spatter_with(x, c, noise), spatter.spatter_with(xc, c, noise).cpu()
        assert ((a - b).abs() * 255).max() <= 1 + 1e-3
        c = IMAGENET["glass_blur"][2]
        a, b = (
            noise_blur.glass_blur_with_seeds(x, c, [1, 2, 3, 4]),
            noise_blur.glass_blur_with_seeds(xc, c, [1, 2, 3, 4]).cpu(),
        )
        assert ((a - b).abs() * 255).max() <= 1 + 1e-3
