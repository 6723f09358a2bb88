"""Every perturbation, attack step and streaming metric gives the CPU's result on another device.

Each test runs the CPU and ``device`` side by side. ``device`` is ``cpu`` too in the plain run (CI): the
comparison itself is exercised and the result must be bit-for-bit repeatable. The ``cuda`` cases are
``-m gpu`` (``benchmarks/gpu_check.sh`` runs them): float kernels differ between devices, so results
agree within the tolerance each test names, and draws made with a device generator (noise fill, the
noise sequences of ImageNet-P) are compared by their statistics rather than pixel for pixel. The 19
corruptions' agreement is in ``test_corruptions.py``, the GPU JPEG decode's in ``test_decode_batch.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_vit.metrics.accumulators import ClassificationAccumulator
from robustbench_vit.perturbations import patch_shuffle, random_patch_drop, saliency_patch_drop
from robustbench_vit.perturbations import sequences as seq
from robustbench_vit.perturbations.fourier import (
    FILTER_KINDS,
    fourier_basis,
    fourier_noise,
    frequency_filter,
    half_plane_frequencies,
)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 4, size: int = 224, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] on multiples of 1/255, as decoded images are."""
    small = torch.rand(b, 3, 14, 14, generator=gen(seed))
    x = torch.nn.functional.interpolate(small, size=size, mode="bilinear", align_corners=False)
    return torch.floor(x * 255) / 255


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in uint8 levels, on the CPU in float64."""
    return (a.detach().cpu().double() - b.detach().cpu().double()).abs() * 255


@pytest.fixture(autouse=True)
def _exact_float32():
    """No TF32 in matmuls and convolutions, so CUDA float32 is float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# --- occlusion and patch shuffle: index operations, so exactly equal ----------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_random_patch_drop(device, fill):
    x = images()
    for fraction, grid, offset, mode in [
        (0.5, 14, False, "batch"),
        (0.25, 7, True, "image"),
        (1.0, 16, False, "image"),
    ]:
        kw = dict(fraction=fraction, grid=grid, fill=fill, offset=offset, mask_mode=mode)
        a = random_patch_drop(x, generator=gen(3), **kw)
        b = random_patch_drop(x.to(device), generator=gen(3), **kw)
        assert b.device.type == device and levels(a, b).max() <= 1e-3, (fraction, grid, offset)


@pytest.mark.parametrize("device", DEVICES)
def test_noise_fill_draws_on_the_device_and_keeps_the_rest(device):
    x = images()
    a = random_patch_drop(x, fraction=0.5, fill="noise", generator=gen(3))
    b = random_patch_drop(x.to(device), fraction=0.5, fill="noise", generator=gen(3)).cpu()
    kept = (a == x).all(1) & (b == x).all(1)
    dropped = ~(a == x).all(1)
    assert (dropped == ~(b == x).all(1)).float().mean() > 0.999  # the same cells (a noise pixel may equal x)
    assert kept.float().mean() > 0.45 and 0 <= b.min() and b.max() <= 1
    assert abs(float(b.permute(1, 0, 2, 3)[:, dropped].mean()) - 0.5) < 0.01  # uniform noise there


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("salient", [True, False])
def test_saliency_patch_drop(device, salient):
    x, sal = images(), torch.rand(4, 14, 14, generator=gen(1))
    for mass in (0.1, 0.5, 0.9):
        a = saliency_patch_drop(x, sal, mass=mass, salient=salient)
        b = saliency_patch_drop(x.to(device), sal.to(device), mass=mass, salient=salient)
        assert b.device.type == device and torch.equal(a, b.cpu()), mass


@pytest.mark.parametrize("device", DEVICES)
def test_saliency_maps(device):
    """The class-token attention that salient / non-salient PatchDrop ranks cells by (a ViT's last block)."""
    from robustbench_vit.models.attention import cls_attention
    from robustbench_vit.models.loading import load_model

    x = images(2, 160)
    maps = []
    for d in ("cpu", device):
        torch.manual_seed(0)
        m = load_model("timm:test_vit", device=d, pretrained=False)
        maps.append(cls_attention(m, x.to(d), head="mean").cpu())
    assert maps[0].shape == maps[1].shape and torch.allclose(maps[0], maps[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_patch_shuffle(device):
    x = images()
    for grid, mode, crop in [
        (2, "batch", False),
        (4, "image", False),
        ((4, 8), "batch", True),
        (14, "image", True),
    ]:
        kw = dict(grid=grid, mask_mode=mode, crop=crop)
        a = patch_shuffle(x, generator=gen(5), **kw)
        b = patch_shuffle(x.to(device), generator=gen(5), **kw)
        assert b.device.type == device and torch.equal(a, b.cpu()), (grid, mode, crop)


# --- Fourier: heat-map basis noise and radial filters ------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_fourier_basis_and_noise(device):
    freqs = half_plane_frequencies(6, stride=2)
    a_basis = fourier_basis(freqs, (224, 224))
    b_basis = fourier_basis(freqs, (224, 224), device=device)
    assert b_basis.device.type == device
    assert (a_basis - b_basis.cpu()).abs().max() < 1e-6
    x = images(2)
    a = fourier_noise(x, a_basis, eps=15.7, generator=gen(2))
    b = fourier_noise(x.to(device), b_basis, eps=15.7, generator=gen(2))
    assert b.shape == a.shape and levels(a, b).max() < 1e-3  # same signs, float32 rounding only


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", FILTER_KINDS)
@pytest.mark.parametrize("soft", [False, True])
def test_frequency_filter(device, kind, soft):
    x = images()
    r2 = 40.0 if kind.startswith("band") else None
    a = frequency_filter(x, kind=kind, radius=12.0, radius2=r2, soft=soft)
    b = frequency_filter(x.to(device), kind=kind, radius=12.0, radius2=r2, soft=soft)
    assert b.device.type == device and levels(a, b).max() < 0.01  # FFT libraries differ by ~1e-6


# --- ImageNet-P sequences ------------------------------------------------------------------------------
DETERMINISTIC_SEQUENCES = ["motion_blur", "zoom_blur", "brightness", "translate", "rotate", "tilt", "scale"]


def _canvas(b: int = 2) -> torch.Tensor:
    return images(b, size=seq.CANVAS, seed=4)


def _ext(b: int = 2) -> torch.Tensor:
    return seq.canvas_extent([(seq.CANVAS, seq.CANVAS)] * b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", DETERMINISTIC_SEQUENCES)
def test_deterministic_sequences(device, name):
    """Frames on multiples of 1/255: a value on a rounding edge may land one level apart (a GPU kernel's
    fused multiply-adds round differently, and floored values sit on edges), never more."""
    c = _canvas()
    a = seq.generate(name, c, _ext(), gen(0))
    b = seq.generate(name, c.to(device), _ext(), gen(0))
    assert b.device.type == device and b.shape == a.shape
    d = levels(a, b)
    assert d.max() <= 1 + 1e-3 and d.mean() < 0.1, (float(d.max()), float(d.mean()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "snow"])
def test_noise_sequences(device, name):
    """Drawn with a generator on the device: the first frame is the image, and every frame's distance
    from it has the CPU's statistics."""
    c = _canvas()
    a = seq.generate(name, c, _ext(), gen(0), difficulty=2)
    b = seq.generate(name, c.to(device), _ext(), gen(0), difficulty=2).cpu()
    assert b.shape == a.shape and 0 <= b.min() and b.max() <= 1
    if name != "snow":
        assert levels(a[0], b[0]).max() <= 1e-3
    da, db = (levels(f, f[:1]).mean(dim=(1, 2, 3, 4)) for f in (a, b))
    # snow: few of the (224/3)^2 independent draws per image pass the threshold (7-9% apart across seeds)
    rtol = 0.25 if name == "snow" else 0.02
    assert torch.allclose(da[1:], db[1:], rtol=rtol, atol=0.05), (da[1:5], db[1:5])


# --- attacks and metrics ------------------------------------------------------------------------------
def _tiny_cnn(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    return m.eval().to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "norm, extra",
    [("linf", {}), ("l2", {}), ("linf", {"momentum": 1.0, "di_prob": 1.0, "ti_kernel": 5})],
    ids=["linf", "l2", "mi-di-ti"],
)
def test_pgd(device, norm, extra):
    """Same random start and input-diversity draws (on the CPU), nearly the same steps: sign(grad) flips
    only where the gradient is ~0 (and the next step sees that pixel), so at least 98% of pixels agree,
    all in the ball. The transfer suite's momentum, DI and TI variants included."""
    from robustbench_vit.attacks.pgd import PGD

    x, y = images(4, 64), torch.tensor([0, 1, 2, 3])
    eps = 8 / 255 if norm == "linf" else 0.5
    atk = PGD(norm=norm, eps=eps, steps=3, step_size=eps / 4, **extra)
    a = atk(_tiny_cnn("cpu"), x, y, generator=gen(9)).x_adv
    b = atk(_tiny_cnn(device), x.to(device), y.to(device), generator=gen(9)).x_adv
    assert b.device.type == device
    same = (levels(a, b) < 0.01).double().mean()
    assert same > 0.98, float(same)
    delta = (b.cpu() - x).flatten(1)
    bound = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (bound <= eps + 1e-5).all()


@pytest.mark.parametrize("device", DEVICES)
def test_accumulator_statistics(device):
    """Statistics kept on the device until read equal those of the CPU stream (float32 softmax rounding)."""
    logits = torch.randn(3, 64, 100, generator=gen(1)) * 3
    labels = torch.randint(0, 100, (3, 64), generator=gen(2))
    accs = {d: ClassificationAccumulator() for d in ("cpu", device)}
    for d, acc in accs.items():
        for k in range(3):
            acc.update(logits[k].to(d), labels[k].to(d), torch.arange(64 * k, 64 * (k + 1)))
    a, b = (accs[d] for d in ("cpu", device))
    names = ("top1", "top5", "nll", "ece", "brier")
    for ma, mb in zip(a.results(names), b.results(names)):
        assert ma.n == mb.n == 192 and abs(ma.value - mb.value) < 1e-5, (ma, mb)
    sa, sb = a.samples(), b.samples()
    for col in ("index", "label", "pred", "correct"):
        assert np.array_equal(sa[col], sb[col]), col
    assert np.allclose(sa["loss"], sb["loss"], atol=1e-5)


# --- whole runs: loader, cache, perturbation, forward and metrics on the device -----------------------
E2E_SUITES = {
    "clean": {},
    "occlusion": {"fractions": [0.25, 0.75], "grid": "8"},
    "patch_shuffle": {"grids": ["1", "2", "4x8"]},
    "fourier_filter": {"kinds": ["low", "high"], "radius_fractions": [0.25, 1.0]},
    # deterministic corruptions only: the noises draw with a generator on the device
    "corruptions": {"corruptions": ["defocus_blur", "zoom_blur", "contrast", "pixelate"], "severities": [3]},
    "fourier_heatmap": {"radius": 2},
    "pgd": {"epsilons": ["1/255", "2/255"], "steps": 2},
}
CONTINUOUS = ("nll", "ece", "brier")  # and their means; every other metric counts images


def _folder(root, n: int = 24):
    from PIL import Image

    from robustbench_vit.data.labels import get_label_space

    wnids = get_label_space("imagenet1k").wnids
    x = images(n, 96, seed=11)
    for i in range(n):
        d = root / wnids[i % 4]
        d.mkdir(parents=True, exist_ok=True)
        arr = (x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"img_{i:03d}.JPEG", quality=90)
    return root


def _vit() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_vit", pretrained=False).eval()


@pytest.mark.parametrize("device", DEVICES)
def test_whole_runs_agree(device, tmp_path):
    """Every row of seven suites: identical on a second CPU run; on the device, which loads, perturbs and
    attacks there, within two images' worth for counted metrics and 0.1% for NLL, ECE and Brier (which
    move with every pixel: the random network's top-1 is 0 on both, so they carry the comparison)."""
    from robustbench_vit.engine.runner import evaluate
    from robustbench_vit.suites import make_suite

    data = str(_folder(tmp_path / "data"))
    # decoded on the CPU for both: nvjpeg's pixels (within a level) are test_decode_batch's concern
    kw = dict(
        data=data, batch_size=8, out=None, progress=False, cache_dir=str(tmp_path / "cache"), decode="cpu"
    )

    def run(dev: str):
        suites = [make_suite(name, params) for name, params in E2E_SUITES.items()]
        df = evaluate(_vit(), suites, name="vit", device=dev, dtype="fp32", **kw)
        return df.set_index(["suite", "condition", "metric"]).sort_index()

    a, b = run("cpu"), run(device)
    assert a.index.equals(b.index) and len(a) > 50
    assert set(a.index.get_level_values("suite")) == set(E2E_SUITES)
    if device == "cpu":
        assert np.array_equal(a.value.to_numpy(), b.value.to_numpy(), equal_nan=True)
        return
    for key, va, vb in zip(a.index, a.value, b.value):
        n = float(a.loc[key, "n"]) or 1.0
        continuous = key[2].startswith(CONTINUOUS)
        tol = 1e-3 * abs(va) + 1e-4 if continuous else 2.0 / n + 1e-6
        assert (np.isnan(va) and np.isnan(vb)) or abs(va - vb) <= tol, (key, va, vb)
